#!/usr/bin/env node
// Deterministic generator of signed atproto repositories, built with the
// reference implementation (@atproto/repo). Ground truth for atrepo's tests
// and benchmarks. See README.md in this directory.
//
//   node gen_repo.mjs --records N --seed S --out DIR
//        [--curve k256|p256] [--changes K] [--did DID]
//
// Large N: node --max-old-space-size=12000 gen_repo.mjs --records 1000000 ...
//
// Run with atrepo/_reference as cwd (or anywhere: imports resolve relative to
// this file, whose directory holds node_modules).

import fs from 'node:fs'
import path from 'node:path'
import {
  Repo,
  MemoryBlockstore,
  DataDiff,
  MST,
  writeCarStream,
  signCommit,
  cborToLex,
} from '@atproto/repo'
import { Secp256k1Keypair, P256Keypair } from '@atproto/crypto'
import { createCid, parseCid } from '@atproto/lex-data'
import { TID } from '@atproto/common-web'

const T0 = Date.now()
const log = (msg) =>
  process.stderr.write(`[gen_repo ${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`)

// ---------------------------------------------------------------- CLI

function usage(msg) {
  if (msg) process.stderr.write(`error: ${msg}\n`)
  process.stderr.write(
    'usage: node gen_repo.mjs --records N --seed S --out DIR ' +
      '[--curve k256|p256] [--changes K] [--did DID]\n',
  )
  process.exit(2)
}

function parseArgs(argv) {
  const opts = { curve: 'k256', changes: 0, did: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const eq = a.indexOf('=')
    const name = eq > 0 ? a.slice(0, eq) : a
    const val = () => (eq > 0 ? a.slice(eq + 1) : argv[++i])
    switch (name) {
      case '--records': opts.records = Number(val()); break
      case '--seed': opts.seed = String(val()); break
      case '--out': opts.out = val(); break
      case '--curve': opts.curve = val(); break
      case '--changes': opts.changes = Number(val()); break
      case '--did': opts.did = val(); break
      case '-h': case '--help': usage()
      default: usage(`unknown argument ${a}`)
    }
  }
  if (!Number.isInteger(opts.records) || opts.records < 1) usage('--records N (N >= 1) required')
  if (opts.seed === undefined || opts.seed === 'undefined') usage('--seed required')
  if (!opts.out) usage('--out required')
  if (!['k256', 'p256'].includes(opts.curve)) usage('--curve must be k256 or p256')
  if (!Number.isInteger(opts.changes) || opts.changes < 0) usage('--changes K must be >= 0')
  if (opts.did !== null && !/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/.test(opts.did)) usage('bad --did')
  return opts
}

// ---------------------------------------------------------------- PRNG
// mulberry32 streams, each seeded by a 32-bit hash of (seed, stream name) so
// that e.g. the keys/DID do not depend on --records.

function hash32(str) {
  // FNV-1a followed by a murmur3 finalizer
  let h = 0x811c9dc5
  for (let i = 0; i < str.length; i++) {
    h ^= str.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

class Rng {
  constructor(seed, stream) {
    this.a = hash32(`${seed}\u0000${stream}`)
  }
  u32() {
    let t = (this.a = (this.a + 0x6d2b79f5) | 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  // integer in [0, n)
  int(n) {
    return Math.floor((this.u32() / 4294967296) * n)
  }
  range(lo, hi) {
    // inclusive
    return lo + this.int(hi - lo + 1)
  }
  chance(pct) {
    return this.int(1000) < pct * 10
  }
  pick(arr) {
    return arr[this.int(arr.length)]
  }
  bytes(n) {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i += 4) {
      const v = this.u32()
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff
    }
    return out
  }
}

// ---------------------------------------------------------------- helpers

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const randomDid = (rng) => {
  let s = 'did:plc:'
  for (let i = 0; i < 24; i++) s += B32[rng.int(32)]
  return s
}
const cborCid = (rng) => createCid(0x71, 0x12, rng.bytes(32)) // dag-cbor, sha256
const rawCid = (rng) => createCid(0x55, 0x12, rng.bytes(32)) // raw, sha256
const utf8Len = (s) => Buffer.byteLength(s, 'utf8')
const isoTime = (us) => new Date(Math.floor(us / 1000)).toISOString()

// Timeline: starts 2023-01-01T00:00:00Z; 1 s .. 120 s between records (mean
// ~60 s), so even 1M records end in late 2024, i.e. no TID/rev in the future.
const START_US = Date.UTC(2023, 0, 1, 0, 0, 0) * 1000 // microseconds
const gapUs = (rng) => 1_000_000 + rng.int(119_000_000)

const WORDS = {
  en: (
    'the a to and of is in it you that for on this just my with so be was have not but are ' +
    'today really love new time good great people think know day what about first here now ' +
    'morning coffee cat dog weather code bug release shipped finally weekend music album ' +
    'photo sunset train city night book reading thread thanks everyone lol wow yes no maybe ' +
    'feed custom algorithm protocol decentralized open source python rust typescript'
  ).split(' '),
  ja: (
    '今日は 本当に ありがとう 猫 かわいい 東京 ラーメン 天気 いい 仕事 おはよう おやすみ ' +
    '写真 桜 電車 コーヒー 新しい 楽しい 週末 音楽 です ます した 。 、 ！ 笑'
  ).split(' '),
  pt: (
    'obrigado coração São Paulo amanhã você não é muito bom dia hoje café praia ' +
    'saudade ação informação até então português Brasil música'
  ).split(' '),
  de: 'Grüße aus München schönes Wetter heute Straße Brötchen Übung für'.split(' '),
}
const EMOJI = ['😀', '🎉', '❤️', '👍🏽', '🦋', '🇧🇷', '👨‍👩‍👧', '🔥', '✨', '🙏', '😂', '☕', '🌸']
const LANGS = [
  [60, ['en']],
  [15, ['ja']],
  [8, ['pt', 'en']],
  [4, ['pt']],
  [3, ['de']],
  [10, null], // langs omitted
]
const HANDLES = ['alice.bsky.social', 'bob.test', 'carol.example.com', 'dan.bsky.social', 'エリカ.jp']

function pickWeighted(rng, table) {
  let r = rng.int(100)
  for (const [w, v] of table) {
    if (r < w) return v
    r -= w
  }
  return table[table.length - 1][1]
}

const cpLen = (s) => {
  let n = 0
  for (const _ of s) n++
  return n
}

function makeText(rng, langs, target) {
  const lang = langs ? langs[rng.int(langs.length)] : 'en'
  const words = WORDS[lang] ?? WORDS.en
  const sep = lang === 'ja' ? '' : ' '
  let text = ''
  let len = 0
  while (len < target) {
    let w = rng.chance(8) ? rng.pick(EMOJI) : rng.pick(words)
    if (rng.chance(5)) w = rng.pick(WORDS.en) // a bit of code-switching
    const piece = text ? sep + w : w
    const l = cpLen(piece)
    if (len + l > target) break
    text += piece
    len += l
    if (rng.chance(3) && len + 1 < target) {
      text += '\n'
      len += 1
    }
  }
  return text
}

// ---------------------------------------------------------------- content

class ContentGen {
  constructor(seed, did) {
    this.rng = new Rng(seed, 'content')
    this.did = did
    const poolRng = new Rng(seed, 'did-pool')
    this.popular = Array.from({ length: 3000 }, () => randomDid(poolRng))
    this.ownPosts = [] // strong refs to our own posts (for self-replies / quotes)
    this.ownLists = []
  }
  otherDid() {
    const r = this.rng
    return r.chance(60) ? r.pick(this.popular) : randomDid(r)
  }
  // strongRef to some post, own or foreign, created before `us`
  postRef(us) {
    const r = this.rng
    if (this.ownPosts.length > 0 && r.chance(10)) return r.pick(this.ownPosts)
    const back = r.int(30 * 24 * 3600) * 1_000_000 + r.int(1_000_000)
    const tid = TID.fromTime(us - back, r.int(32)).toString()
    return { uri: `at://${this.otherDid()}/app.bsky.feed.post/${tid}`, cid: cborCid(r).toString() }
  }
  blob(mime, lo, hi) {
    const r = this.rng
    return { $type: 'blob', ref: rawCid(r), mimeType: mime, size: r.range(lo, hi) }
  }

  profile(us, variant = 0) {
    const r = this.rng
    return {
      $type: 'app.bsky.actor.profile',
      displayName: r.pick(['Ada Lovelace 🦋', 'テスト ユーザー', 'João da Silva', 'bench user']) + (variant ? ` v${variant}` : ''),
      description: makeText(r, ['en'], r.range(20, 200)) + '\n🌐 https://example.com',
      avatar: this.blob('image/jpeg', 20_000, 900_000),
      banner: this.blob('image/jpeg', 50_000, 1_000_000),
      createdAt: isoTime(us),
    }
  }

  post(us, rkey) {
    const r = this.rng
    const langs = pickWeighted(r, LANGS)
    const rec = { $type: 'app.bsky.feed.post', text: '' }
    let target
    const k = r.int(100)
    if (k < 4) target = 0
    else if (k < 20) target = r.int(301)
    else target = Math.min(r.int(301), r.int(301), r.int(301))
    // optional facet segment (mention / link / tag)
    let facetSeg = null
    if (r.chance(15) && target >= 40) {
      const kind = r.int(3)
      if (kind === 0) {
        const did = this.otherDid()
        facetSeg = { text: '@' + r.pick(HANDLES), feature: { $type: 'app.bsky.richtext.facet#mention', did } }
      } else if (kind === 1) {
        const uri = `https://example.com/${r.pick(['blog', 'p', 'news', 'caf%C3%A9'])}/${r.int(100000)}`
        // displayed text is the shortened, decoded form (as the app does)
        const shown = decodeURI(uri.replace('https://', ''))
        facetSeg = { text: shown, feature: { $type: 'app.bsky.richtext.facet#link', uri } }
      } else {
        const tag = r.pick(['atproto', 'bluesky', '日本語', 'python', 'art'])
        facetSeg = { text: '#' + tag, feature: { $type: 'app.bsky.richtext.facet#tag', tag } }
      }
      target -= cpLen(facetSeg.text) + 1
    }
    let text = makeText(r, langs, Math.max(target, 0))
    if (facetSeg) {
      const before = r.chance(50) || text === '' ? text + (text ? ' ' : '') : ''
      const after = before === '' ? ' ' + text : ''
      text = before + facetSeg.text + after
      const byteStart = utf8Len(before)
      rec.facets = [
        {
          index: { byteStart, byteEnd: byteStart + utf8Len(facetSeg.text) },
          features: [facetSeg.feature],
        },
      ]
    }
    rec.text = text
    if (langs) rec.langs = langs
    if (r.chance(20)) {
      const parent = this.postRef(us)
      const root = r.chance(50) ? parent : this.postRef(us)
      rec.reply = { root, parent }
    }
    const e = r.int(100)
    if (e < 10) {
      const n = r.range(1, 4)
      const images = []
      for (let i = 0; i < n; i++) {
        const img = {
          alt: r.chance(40) ? makeText(r, ['en'], r.range(5, 120)) : '',
          image: this.blob(r.chance(85) ? 'image/jpeg' : 'image/png', 10_000, 1_000_000),
        }
        if (r.chance(80)) img.aspectRatio = { width: r.range(1, 4000), height: r.range(1, 4000) }
        images.push(img)
      }
      rec.embed = { $type: 'app.bsky.embed.images', images }
    } else if (e < 14) {
      rec.embed = { $type: 'app.bsky.embed.record', record: this.postRef(us) }
    }
    rec.createdAt = isoTime(us)
    if (this.ownPosts.length < 1000) {
      // refs to own posts are fake-CID'd (the real CID is not known yet); good enough
      this.ownPosts.push({ uri: `at://${this.did}/app.bsky.feed.post/${rkey}`, cid: cborCid(r).toString() })
    }
    return rec
  }

  record(collection, us, rkey) {
    const r = this.rng
    switch (collection) {
      case 'app.bsky.feed.like':
        return { $type: collection, subject: this.postRef(us), createdAt: isoTime(us) }
      case 'app.bsky.feed.repost':
        return { $type: collection, subject: this.postRef(us), createdAt: isoTime(us) }
      case 'app.bsky.graph.follow':
      case 'app.bsky.graph.block':
        return { $type: collection, subject: this.otherDid(), createdAt: isoTime(us) }
      case 'app.bsky.feed.post':
        return this.post(us, rkey)
      case 'app.bsky.graph.list': {
        const rec = {
          $type: collection,
          purpose: r.chance(70) ? 'app.bsky.graph.defs#curatelist' : 'app.bsky.graph.defs#modlist',
          name: r.pick(['Friends', 'Python people', 'アート', 'Spam 🚫', 'Músicos']),
          createdAt: isoTime(us),
        }
        if (r.chance(50)) rec.description = makeText(r, ['en'], r.range(10, 150))
        this.ownLists.push(`at://${this.did}/app.bsky.graph.list/${rkey}`)
        return rec
      }
      case 'app.bsky.graph.listitem':
        return {
          $type: collection,
          subject: this.otherDid(),
          list: r.pick(this.ownLists),
          createdAt: isoTime(us),
        }
      case 'app.bsky.actor.profile':
        return this.profile(us, 1)
      default:
        throw new Error(`unknown collection ${collection}`)
    }
  }

  // collection mix (per mille): like 45%, post 25%, follow 20%, repost 9%,
  // block 0.6%, list 0.1%, listitem 0.3% (listitem only once a list exists)
  pickCollection() {
    const x = this.rng.int(1000)
    if (x < 450) return 'app.bsky.feed.like'
    if (x < 700) return 'app.bsky.feed.post'
    if (x < 900) return 'app.bsky.graph.follow'
    if (x < 990) return 'app.bsky.feed.repost'
    if (x < 996) return 'app.bsky.graph.block'
    if (x < 997 || this.ownLists.length === 0) return 'app.bsky.graph.list'
    return 'app.bsky.graph.listitem'
  }
}

// ---------------------------------------------------------------- keys

async function deriveKeypair(rng, curve) {
  const Kp = curve === 'p256' ? P256Keypair : Secp256k1Keypair
  for (;;) {
    const priv = rng.bytes(32)
    try {
      return await Kp.import(priv, { exportable: true })
    } catch {
      // out-of-range scalar (astronomically unlikely): draw again
    }
  }
}

// ---------------------------------------------------------------- CAR output

// Emulates @atproto/pds SqlRepoReader.getBlockRange():
//   SELECT cid, repoRev, content FROM repo_block ORDER BY repoRev DESC, cid DESC
// where cid is the base32 CID string (SQLite BINARY collation = byte order).
// Returns the CID strings in that order.
function pdsOrder(blockMap, revOf) {
  // BlockMap keeps a Map<cidString, bytes> in its `map` field; use the string
  // keys directly instead of re-parsing every CID (matters for 1M records).
  const keys = Array.from(blockMap.map.keys())
  const revs = new Map()
  for (const s of keys) revs.set(s, revOf(s))
  keys.sort((a, b) => {
    const ra = revs.get(a)
    const rb = revs.get(b)
    if (ra !== rb) return ra < rb ? 1 : -1
    return a < b ? 1 : a > b ? -1 : 0
  })
  return keys.map((s) => ({ s, rev: revs.get(s) }))
}

async function writeCar(file, root, rows, blockMap) {
  async function* blocks() {
    for (const r of rows) {
      const bytes = blockMap.map.get(r.s)
      if (!bytes) throw new Error(`missing block ${r.s}`)
      yield { cid: parseCid(r.s), bytes }
    }
  }
  const fd = fs.openSync(file, 'w')
  let buf = []
  let bufLen = 0
  let total = 0
  const flush = () => {
    if (bufLen === 0) return
    const b = Buffer.concat(buf, bufLen)
    fs.writeSync(fd, b)
    buf = []
    bufLen = 0
  }
  for await (const chunk of writeCarStream(root, blocks())) {
    buf.push(chunk)
    bufLen += chunk.byteLength
    total += chunk.byteLength
    if (bufLen >= 4 << 20) flush()
  }
  flush()
  fs.closeSync(fd)
  return total
}

// ---------------------------------------------------------------- repo helpers

function splitKey(key) {
  const i = key.indexOf('/')
  return [key.slice(0, i), key.slice(i + 1)]
}

async function describe(storage, commitCid) {
  const repo = await Repo.load(storage, commitCid)
  const leaves = await repo.data.list() // reference MST walk, key order
  const collections = {}
  const lines = []
  for (const leaf of leaves) {
    const [coll, rkey] = splitKey(leaf.key)
    collections[coll] = (collections[coll] ?? 0) + 1
    lines.push(`${coll}\t${rkey}\t${leaf.value.toString()}`)
  }
  return { repo, leaves, collections, tsv: lines.length ? lines.join('\n') + '\n' : '' }
}

function truthOf({ did, keypair, otherKey, repo, cid, recordCount, blockCount, carBytes, collections, extra }) {
  const sorted = {}
  for (const k of Object.keys(collections).sort()) sorted[k] = collections[k]
  return {
    did,
    signing_key: keypair.did(),
    other_key: otherKey.did(),
    commit_cid: cid.toString(),
    data_cid: repo.commit.data.toString(),
    rev: repo.commit.rev,
    version: repo.commit.version,
    record_count: recordCount,
    block_count: blockCount,
    car_bytes: carBytes,
    collections: sorted,
    ...extra,
  }
}

// Repo.formatCommit() always takes its rev from the wall clock
// (TID.nextStr(prevRev)); to stay deterministic we keep its MST/diff output and
// re-sign the commit object with our own rev via the reference signCommit().
async function formatCommitAtRev(repo, writes, keypair, rev) {
  const c = await repo.formatCommit(writes, keypair)
  const clockCommit = cborToLex(c.newBlocks.get(c.cid))
  c.newBlocks.delete(c.cid)
  c.relevantBlocks.delete(c.cid)
  const commit = await signCommit(
    { did: repo.did, version: 3, rev, prev: null, data: clockCommit.data },
    keypair,
  )
  const cid = await c.newBlocks.add(commit)
  await c.relevantBlocks.add(commit)
  return { ...c, cid, rev }
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const N = opts.records
  fs.mkdirSync(opts.out, { recursive: true })

  // identity: independent of N
  const idRng = new Rng(opts.seed, 'identity')
  const didFromSeed = randomDid(idRng)
  const did = opts.did ?? didFromSeed
  const clockId = idRng.int(32)
  const keypair = await deriveKeypair(new Rng(opts.seed, `key-${opts.curve}`), opts.curve)
  const otherKey = await deriveKeypair(new Rng(opts.seed, `other-key-${opts.curve}`), opts.curve)
  log(`did=${did} key=${keypair.did()} records=${N} changes=${opts.changes}`)

  // timeline: precompute record times so the commit rev (which must sort after
  // every record TID) is known before the single init commit is formatted
  const timeRng = new Rng(opts.seed, 'time')
  const times = new Float64Array(N)
  let t = START_US
  for (let i = 0; i < N; i++) {
    t += gapUs(timeRng)
    times[i] = t
  }
  t += gapUs(timeRng)
  const rev1 = TID.fromTime(t, clockId).toString()

  const content = new ContentGen(opts.seed, did)

  // Lazily generated creates, consumed by Repo.formatInitCommit (it iterates
  // initialWrites with for..of, so a generator keeps memory flat for huge N).
  function* initialWrites() {
    for (let i = 0; i < N; i++) {
      const us = times[i]
      let collection, rkey, record
      if (i === 0) {
        collection = 'app.bsky.actor.profile'
        rkey = 'self'
        record = content.profile(us)
      } else {
        collection = content.pickCollection()
        rkey = TID.fromTime(us, clockId).toString()
        record = content.record(collection, us, rkey)
      }
      yield { action: 'create', collection, rkey, record }
      if ((i + 1) % 50_000 === 0) log(`generated ${i + 1} / ${N} records`)
    }
  }

  const storage = new MemoryBlockstore()
  const init = await Repo.formatInitCommit(storage, did, keypair, initialWrites(), rev1)
  log(`init commit formatted: ${init.cid} (${init.newBlocks.size} blocks)`)
  await storage.applyCommit(init)
  init.newBlocks = init.relevantBlocks = null // storage holds them now; free the map

  log('walking the reference MST (Repo.load + data.list)')
  const d1 = await describe(storage, init.cid)
  if (d1.leaves.length !== N) throw new Error(`expected ${N} leaves, got ${d1.leaves.length}`)
  // every stored block belongs to rev1 (as after a single commit / importRepo)
  const rows1 = pdsOrder(storage.blocks, () => rev1)
  log(`listed ${d1.leaves.length} records; writing repo.car`)
  const car1 = await writeCar(path.join(opts.out, 'repo.car'), init.cid, rows1, storage.blocks)
  fs.writeFileSync(path.join(opts.out, 'records.tsv'), d1.tsv)
  const truth1 = truthOf({
    did, keypair, otherKey, repo: d1.repo, cid: init.cid,
    recordCount: d1.leaves.length, blockCount: rows1.length, carBytes: car1,
    collections: d1.collections,
    extra: { prev: null, curve: opts.curve, seed: opts.seed },
  })
  fs.writeFileSync(path.join(opts.out, 'truth.json'), JSON.stringify(truth1, null, 2) + '\n')
  log(`wrote repo.car (${car1} bytes, ${rows1.length} blocks), rev ${rev1}`)

  if (opts.changes > 0) {
    const repo1 = d1.repo
    const chRng = new Rng(opts.seed, 'changes')
    content.rng = new Rng(opts.seed, 'changes-content')
    const keys = d1.leaves.map((l) => l.key)
    const touched = new Set()
    const pickExisting = (allowProfile) => {
      for (let tries = 0; tries < 64; tries++) {
        const k = keys[chRng.int(keys.length)]
        if (touched.has(k)) continue
        if (!allowProfile && k === 'app.bsky.actor.profile/self') continue
        return k
      }
      return null
    }
    const writes = []
    let tc = t
    for (let i = 0; i < opts.changes; i++) {
      tc += gapUs(timeRng)
      const x = chRng.int(100)
      let key = null
      let action = 'create'
      if (x >= 40 && x < 70) {
        key = pickExisting(true)
        if (key) action = 'update'
      } else if (x >= 70) {
        key = pickExisting(false)
        if (key) action = 'delete'
      }
      if (action === 'create') {
        const collection = content.pickCollection()
        const rkey = TID.fromTime(tc, clockId).toString()
        writes.push({ action, collection, rkey, record: content.record(collection, tc, rkey) })
        touched.add(`${collection}/${rkey}`)
      } else {
        touched.add(key)
        const [collection, rkey] = splitKey(key)
        if (action === 'update') {
          writes.push({ action, collection, rkey, record: content.record(collection, tc, rkey) })
        } else {
          writes.push({ action, collection, rkey })
        }
      }
    }
    tc += gapUs(timeRng)
    const rev2 = TID.fromTime(tc, clockId).toString()
    const counts = { create: 0, update: 0, delete: 0 }
    for (const w of writes) counts[w.action]++
    log(`applying ${writes.length} changes as one commit: ${JSON.stringify(counts)}`)

    const c2 = await formatCommitAtRev(repo1, writes, keypair, rev2)

    // Emulate SqlRepoTransactor.applyCommit(): putMany(newBlocks, rev) with
    // ON CONFLICT DO NOTHING (existing blocks keep their old repoRev), then
    // deleteMany(removedCids).
    const newRev = new Map()
    c2.newBlocks.forEach((bytes, cid) => {
      const s = cid.toString()
      if (!storage.blocks.has(cid)) newRev.set(s, rev2)
    })
    await storage.putMany(c2.newBlocks)
    // reference diff (new MST vs old MST), computed while old blocks still exist
    const newData = MST.load(storage, cborToLex(c2.newBlocks.get(c2.cid)).data)
    const diff = await DataDiff.of(newData, repo1.data)
    for (const cid of c2.removedCids.toList()) {
      storage.blocks.delete(cid)
      newRev.delete(cid.toString())
    }
    await storage.updateRoot(c2.cid, rev2)

    // sanity: the commit's new blocks == diff's new MST nodes + new leaves + commit
    {
      const expect = new Set([
        ...diff.newMstBlocks.cids().map(String),
        ...diff.newLeafCids.toList().map(String),
        c2.cid.toString(),
      ])
      const got = new Set(c2.newBlocks.cids().map(String))
      if (expect.size !== got.size || [...expect].some((x) => !got.has(x))) {
        throw new Error('formatCommit newBlocks disagree with DataDiff')
      }
    }

    const d2 = await describe(storage, c2.cid)
    const revOf = (s) => newRev.get(s) ?? rev1
    const rows2 = pdsOrder(storage.blocks, revOf)
    const car2 = await writeCar(path.join(opts.out, 'repo2.car'), c2.cid, rows2, storage.blocks)
    fs.writeFileSync(path.join(opts.out, 'records2.tsv'), d2.tsv)
    // getRepo?since=rev1 -> WHERE repoRev > rev1
    const sinceRows = rows2.filter((r) => r.rev > rev1)
    const sinceBytes = await writeCar(path.join(opts.out, 'since.car'), c2.cid, sinceRows, storage.blocks)

    const truth2 = truthOf({
      did, keypair, otherKey, repo: d2.repo, cid: c2.cid,
      recordCount: d2.leaves.length, blockCount: rows2.length, carBytes: car2,
      collections: d2.collections,
      extra: {
        prev: null,
        curve: opts.curve,
        seed: opts.seed,
        since_rev: rev1,
        prev_commit_cid: init.cid.toString(),
        since_block_count: sinceRows.length,
        since_car_bytes: sinceBytes,
        change_counts: counts,
      },
    })
    fs.writeFileSync(path.join(opts.out, 'truth2.json'), JSON.stringify(truth2, null, 2) + '\n')

    const ops = []
    for (const a of diff.addList()) ops.push([a.key, null, a.cid.toString()])
    for (const u of diff.updateList()) ops.push([u.key, u.prev.toString(), u.cid.toString()])
    for (const d of diff.deleteList()) ops.push([d.key, d.cid.toString(), null])
    ops.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    const leafCids = new Set()
    for (const u of diff.updateList()) leafCids.add(u.prev.toString())
    for (const d of diff.deleteList()) leafCids.add(d.cid.toString())
    const removed = diff.removedCids.toList().map(String).sort()
    const diffJson = {
      ops,
      created_nodes: diff.newMstBlocks.cids().map(String).sort(),
      deleted_nodes: removed.filter((c) => !leafCids.has(c)),
      new_leaf_cids: diff.newLeafCids.toList().map(String).sort(),
      removed_cids: removed,
    }
    fs.writeFileSync(path.join(opts.out, 'diff.json'), JSON.stringify(diffJson, null, 1) + '\n')
    log(
      `wrote repo2.car (${car2} bytes, ${rows2.length} blocks), since.car ` +
        `(${sinceRows.length} blocks), rev ${rev2}, ${ops.length} ops`,
    )
  }
  log(`done in ${((Date.now() - T0) / 1000).toFixed(2)} s`)
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exit(1)
})
