#!/usr/bin/env node
// Re-reads the output of gen_repo.mjs with the reference implementation and
// checks it against truth.json / records.tsv (and, if present, the --changes
// outputs: repo2.car, truth2.json, records2.tsv, since.car, diff.json).
//
//   node check_car.mjs DIR
//
// Exit status 0 = all checks passed.

import fs from 'node:fs'
import path from 'node:path'
import {
  readCarWithRoot,
  readCarStream,
  verifyRepo,
  verifyDiff,
  Repo,
  MemoryBlockstore,
  DataDiff,
  cborToLex,
  cborToLexRecord,
  RepoVerificationError,
} from '@atproto/repo'
import { graphemeLen, utf8Len } from '@atproto/lex-data'

const dir = process.argv[2]
if (!dir) {
  process.stderr.write('usage: node check_car.mjs DIR\n')
  process.exit(2)
}

let failures = 0
let passes = 0
const ok = (cond, msg) => {
  if (cond) passes++
  else {
    failures++
    process.stderr.write(`FAIL: ${msg}\n`)
  }
}
const eq = (a, b, msg) => ok(a === b, `${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`)

const readJson = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))
const readTsv = (f) =>
  fs
    .readFileSync(path.join(dir, f), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'))

// raw block order as stored in the file (readCar collapses into a map)
async function carOrder(bytes) {
  const { roots, blocks } = await readCarStream([bytes])
  const order = []
  for await (const b of blocks) order.push(b.cid.toString())
  return { roots: roots.map(String), order }
}

async function checkFull(carFile, truthFile, tsvFile, revOfBlock) {
  const label = carFile
  const bytes = new Uint8Array(fs.readFileSync(path.join(dir, carFile)))
  const truth = readJson(truthFile)
  const tsv = readTsv(tsvFile)

  // readCarWithRoot verifies every block's CID against its bytes
  const { root, blocks } = await readCarWithRoot(bytes)
  const { roots, order } = await carOrder(bytes)
  eq(roots.length, 1, `${label}: exactly one root`)
  eq(root.toString(), truth.commit_cid, `${label}: root == commit_cid`)
  eq(bytes.byteLength, truth.car_bytes, `${label}: car_bytes`)
  eq(order.length, truth.block_count, `${label}: block_count`)
  eq(new Set(order).size, order.length, `${label}: no duplicate blocks`)

  // commit object
  const commit = cborToLex(blocks.get(root))
  eq(commit.did, truth.did, `${label}: commit.did`)
  eq(commit.version, 3, `${label}: commit.version`)
  eq(commit.version, truth.version, `${label}: truth.version`)
  eq(commit.prev, null, `${label}: commit.prev is null`)
  eq(commit.rev, truth.rev, `${label}: commit.rev`)
  eq(commit.data.toString(), truth.data_cid, `${label}: commit.data == data_cid`)
  ok(commit.sig instanceof Uint8Array && commit.sig.length === 64, `${label}: 64-byte sig`)
  eq(
    Object.keys(commit).sort().join(','),
    'data,did,prev,rev,sig,version',
    `${label}: commit fields`,
  )

  // signature + full MST walk (reference consumer)
  const verified = await verifyRepo(blocks, root, truth.did, truth.signing_key)
  const creates = verified.creates.map((c) => [c.collection, c.rkey, c.cid.toString()])
  eq(creates.length, truth.record_count, `${label}: record_count`)
  eq(tsv.length, truth.record_count, `${tsvFile}: line count`)
  let same = creates.length === tsv.length
  for (let i = 0; same && i < tsv.length; i++) {
    same = creates[i].join('\t') === tsv[i].join('\t')
    if (!same) process.stderr.write(`  first mismatch at ${i}: ${creates[i]} vs ${tsv[i]}\n`)
  }
  ok(same, `${label}: records equal ${tsvFile} (same order)`)
  const keys = tsv.map((r) => `${r[0]}/${r[1]}`)
  ok(keys.every((k, i) => i === 0 || keys[i - 1] < k), `${tsvFile}: strictly ascending key order`)

  // negative: wrong key must fail
  let rejected = false
  try {
    await verifyRepo(blocks, root, truth.did, truth.other_key)
  } catch (err) {
    rejected = err instanceof RepoVerificationError
  }
  ok(rejected, `${label}: other_key rejected`)

  // collections
  const colls = {}
  for (const [c] of tsv) colls[c] = (colls[c] ?? 0) + 1
  eq(JSON.stringify(colls, Object.keys(colls).sort()), JSON.stringify(truth.collections, Object.keys(truth.collections).sort()), `${label}: collections`)

  // every record decodes as a lex record whose $type is its collection
  let typesOk = true
  for (const c of verified.creates) {
    const rec = cborToLexRecord(blocks.get(c.cid))
    if (rec.$type !== c.collection) typesOk = false
  }
  ok(typesOk, `${label}: record $type == collection`)

  // content sanity: rkeys, facet byte ranges, post text limits
  const TID_RE = /^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/
  let rkeysOk = true
  let facetsOk = true
  let textOk = true
  let nFacets = 0
  for (const c of verified.creates) {
    if (c.collection === 'app.bsky.actor.profile') {
      if (c.rkey !== 'self') rkeysOk = false
    } else if (!TID_RE.test(c.rkey)) rkeysOk = false
    if (c.collection !== 'app.bsky.feed.post') continue
    const rec = cborToLexRecord(blocks.get(c.cid))
    if (graphemeLen(rec.text) > 300 || utf8Len(rec.text) > 3000) textOk = false
    const tb = Buffer.from(rec.text, 'utf8')
    for (const f of rec.facets ?? []) {
      nFacets++
      const seg = tb.subarray(f.index.byteStart, f.index.byteEnd).toString('utf8')
      const feat = f.features[0]
      const want =
        feat.$type === 'app.bsky.richtext.facet#link'
          ? decodeURI(feat.uri.replace('https://', ''))
          : feat.$type === 'app.bsky.richtext.facet#tag'
            ? '#' + feat.tag
            : null
      if (want !== null ? seg !== want : !seg.startsWith('@')) facetsOk = false
    }
  }
  ok(rkeysOk, `${label}: rkeys are TIDs (profile: self)`)
  ok(TID_RE.test(truth.rev), `${label}: rev is a TID`)
  ok(verified.creates.every((c) => c.rkey === 'self' || c.rkey < truth.rev), `${label}: every rkey TID sorts before rev`)
  ok(facetsOk, `${label}: ${nFacets} facet byte ranges match their text`)
  ok(textOk, `${label}: post text <= 300 graphemes`)

  // CAR holds exactly commit + MST nodes + records (nothing stale)
  const repo = await Repo.load(new MemoryBlockstore(blocks), root)
  const reachable = await repo.data.allCids()
  reachable.add(root)
  const reachableSet = new Set(reachable.toList().map(String))
  eq(reachableSet.size, order.length, `${label}: block set == reachable set (size)`)
  ok(order.every((c) => reachableSet.has(c)), `${label}: every block reachable`)

  // PDS getRepo order: (repoRev DESC, cid-string DESC)
  let ordered = true
  for (let i = 1; i < order.length; i++) {
    const ra = revOfBlock(order[i - 1])
    const rb = revOfBlock(order[i])
    if (ra < rb || (ra === rb && !(order[i - 1] > order[i]))) {
      ordered = false
      process.stderr.write(`  order broken at ${i}: ${order[i - 1]} (${ra}) then ${order[i]} (${rb})\n`)
      break
    }
  }
  ok(ordered, `${label}: block order (repoRev desc, cid desc)`)

  return { truth, blocks, root, repo, order }
}

async function main() {
  const truth1 = readJson('truth.json')
  const r1 = await checkFull('repo.car', 'truth.json', 'records.tsv', () => truth1.rev)

  if (fs.existsSync(path.join(dir, 'repo2.car'))) {
    const truth2 = readJson('truth2.json')
    const sinceBytes = new Uint8Array(fs.readFileSync(path.join(dir, 'since.car')))
    const since = await readCarWithRoot(sinceBytes)
    const sinceOrder = await carOrder(sinceBytes)
    const sinceSet = new Set(sinceOrder.order)
    eq(since.root.toString(), truth2.commit_cid, 'since.car: root == new commit')
    eq(sinceOrder.order.length, truth2.since_block_count, 'since.car: block count')
    eq(sinceBytes.byteLength, truth2.since_car_bytes, 'since.car: bytes')
    eq(truth2.since_rev, truth1.rev, 'truth2.since_rev == truth.rev')
    ok(truth2.rev > truth1.rev, 'rev2 > rev1')
    ok(
      sinceOrder.order.every((c, i) => i === 0 || sinceOrder.order[i - 1] > c),
      'since.car: cid-desc order',
    )

    const r2 = await checkFull('repo2.car', 'truth2.json', 'records2.tsv', (c) =>
      sinceSet.has(c) ? truth2.rev : truth1.rev,
    )
    // the since blocks are a prefix of repo2.car
    ok(
      sinceOrder.order.every((c, i) => r2.order[i] === c),
      'repo2.car starts with exactly the since.car blocks',
    )

    // apply since.car on top of repo1 with the reference consumer
    const verifiedDiff = await verifyDiff(r1.repo, since.blocks, since.root, truth2.did, truth2.signing_key)
    eq(verifiedDiff.commit.cid.toString(), truth2.commit_cid, 'verifyDiff(repo1, since.car): commit')
    const newBlocks = new Set(verifiedDiff.commit.newBlocks.cids().map(String))
    eq(newBlocks.size, sinceSet.size, 'since.car == reference newBlocks (size)')
    ok([...newBlocks].every((c) => sinceSet.has(c)), 'since.car == reference newBlocks (members)')

    const diffJson = readJson('diff.json')
    const wantOps = verifiedDiff.writes
      .map((w) => [
        `${w.collection}/${w.rkey}`,
        // delete descripts carry the removed record's CID in `cid`
        w.action === 'create' ? null : w.action === 'update' ? w.prev.toString() : w.cid.toString(),
        w.action === 'delete' ? null : w.cid.toString(),
      ])
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    eq(JSON.stringify(diffJson.ops), JSON.stringify(wantOps), 'diff.json ops == verifyDiff writes')
    eq(diffJson.ops.length, truth2.change_counts.create + truth2.change_counts.update + truth2.change_counts.delete, 'ops count == changes')

    // independent reference diff of the two full CARs
    const d = await DataDiff.of(r2.repo.data, r1.repo.data)
    const created = d.newMstBlocks.cids().map(String).sort()
    eq(JSON.stringify(diffJson.created_nodes), JSON.stringify(created), 'diff.json created_nodes')
    const removed = d.removedCids.toList().map(String).sort()
    eq(JSON.stringify(diffJson.removed_cids), JSON.stringify(removed), 'diff.json removed_cids')
    const r1Nodes = new Set()
    for (const n of await r1.repo.data.allNodes()) {
      if (n.isTree()) r1Nodes.add((await n.getPointer()).toString())
    }
    eq(
      JSON.stringify(diffJson.deleted_nodes),
      JSON.stringify(removed.filter((c) => r1Nodes.has(c))),
      'diff.json deleted_nodes == removed MST nodes',
    )
    ok(created.every((c) => sinceSet.has(c)), 'created_nodes all in since.car')
    ok(diffJson.new_leaf_cids.every((c) => sinceSet.has(c)), 'new leaves all in since.car')
    const r2Set = new Set(r2.order)
    ok(diffJson.deleted_nodes.every((c) => !r2Set.has(c)), 'deleted nodes absent from repo2.car')
    ok(diffJson.removed_cids.every((c) => !r2Set.has(c)), 'removed cids absent from repo2.car')
  }

  process.stderr.write(`${failures === 0 ? 'OK' : 'FAILED'}: ${passes} checks passed, ${failures} failed (${dir})\n`)
  process.exit(failures === 0 ? 0 : 1)
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exit(1)
})
