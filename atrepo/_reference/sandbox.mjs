// A real local PLC directory + PDS (the pinned reference implementation) for network tests.
//
//   node sandbox.mjs [--plc-port N] [--pds-port N] [--bulk-accounts N --bulk-records M]
//                                                        (cwd: atrepo/_reference)
//
// Starts @atproto/dev-env's TestNetworkNoAppView (in-memory PLC; PDS on SQLite in a temp dir),
// seeds four accounts in different states, prints ONE line of JSON to stdout:
//
//   {"plc_url", "pds_url", "admin_password", "accounts": [{"handle", "did", "password",
//    "status": "active"|"deactivated"|"takendown"|"deleted", "records": N}], "startup_ms"}
//
// and keeps serving until stdin closes or SIGTERM/SIGINT, then closes the servers, removes the
// temp dir and exits 0. Everything else (progress, server logs) goes to stderr.
// Port 0 (default) = pick a free port (dev-env uses get-port).
//
// --bulk-accounts N adds N more active accounts, bulk000.test ... (password "bulk000-pass"),
// each with M records (--bulk-records, default 100) of several collections: ~45 % posts (with
// langs), ~30 % likes and ~10 % reposts of its own posts, ~15 % follows. They are written with
// applyWrites, 200 writes per call, a few accounts at a time, so that large sandboxes for
// benchmarks and multi-repo tests seed quickly. Their content is deterministic per index
// (their TIDs, CIDs and DIDs are not).
import { rmSync } from 'node:fs'
import { mkdtemp, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

const t0 = performance.now()
const log = (...args) =>
  console.error(`[sandbox +${((performance.now() - t0) / 1000).toFixed(2)}s]`, ...args)
// Keep stdout for the one JSON line: anything a library prints with console.log goes to stderr.
console.log = console.error
console.info = console.error

const { values: opts } = parseArgs({
  options: {
    'plc-port': { type: 'string', default: '0' },
    'pds-port': { type: 'string', default: '0' },
    'bulk-accounts': { type: 'string', default: '0' },
    'bulk-records': { type: 'string', default: '100' },
  },
})
const BULK_ACCOUNTS = Number(opts['bulk-accounts'])
const BULK_RECORDS = Number(opts['bulk-records'])
if (!(Number.isInteger(BULK_ACCOUNTS) && BULK_ACCOUNTS >= 0 && BULK_ACCOUNTS <= 1000)
    || !(Number.isInteger(BULK_RECORDS) && BULK_RECORDS >= 2)) {
  console.error('--bulk-accounts must be 0..1000 and --bulk-records at least 2')
  process.exit(2)
}

// Deep import of the class exported by '@atproto/dev-env': the package index also loads the
// appview/ozone/bsync stacks, which costs ~2 s of startup and is not needed here.
const require = createRequire(import.meta.url)
const { TestNetworkNoAppView } = require('@atproto/dev-env/dist/network-no-appview.js')
const AVATAR = path.join(
  path.dirname(require.resolve('@atproto/dev-env/package.json')),
  'assets',
  'key-portrait-small.jpg',
)

// ---------------------------------------------------------------- deterministic content
function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rand = mulberry32(20240101)
const pick = (xs) => xs[Math.floor(rand() * xs.length)]
const TEXTS = [
  ['hello from the sandbox', ['en']],
  ['reading repositories as data frames', ['en']],
  ['おはようございます、今日もいい天気ですね', ['ja']],
  ['bom dia! café com pão de queijo ☕', ['pt']],
  ['Grüße aus dem Testnetz, äöüß', ['de']],
  ['family: 👨‍👩‍👧‍👦 flags: 🇧🇷🇯🇵 skin: 👋🏽', undefined],
  ['multi\nline\npost', ['en']],
  ['', undefined],
  ['mixed pt/en: obrigado, thanks', ['pt', 'en']],
]
let clock = Date.parse('2024-01-01T00:00:00.000Z')
const nextTime = () => {
  clock += 1000 + Math.floor(rand() * 120_000)
  return new Date(clock).toISOString()
}
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const fakeDid = () => 'did:plc:' + Array.from({ length: 24 }, () => pick(B32)).join('')

const postRecord = (i, extra = {}) => {
  const [text, langs] = pick(TEXTS)
  const rec = { $type: 'app.bsky.feed.post', text: text && `${text} #${i}`, createdAt: nextTime() }
  if (langs) rec.langs = langs
  return { ...rec, ...extra }
}
const create = (collection, value, rkey) => ({
  $type: 'com.atproto.repo.applyWrites#create',
  collection,
  ...(rkey ? { rkey } : {}),
  value,
})

// ---------------------------------------------------------------- bulk accounts
const BULK_BATCH = 200 // the PDS's limit of writes per applyWrites call
const BULK_PARALLEL = 4 // accounts seeded at once: the PDS keeps one SQLite file per account

// The writes of bulk account `index`: posts first (likes and reposts need their strong refs).
function bulkPlan(index, total) {
  const r = mulberry32(1000 + index)
  let t = Date.parse('2024-06-01T00:00:00.000Z') + index * 1000
  const time = () => new Date((t += 1000 + Math.floor(r() * 60_000))).toISOString()
  const posts = Math.max(1, Math.round(total * 0.45))
  const rest = total - posts
  const likes = Math.round(rest * 0.55)
  const reposts = Math.round(rest * 0.18)
  const follows = rest - likes - reposts
  const postWrites = Array.from({ length: posts }, (_, i) => {
    const [text, langs] = TEXTS[Math.floor(r() * TEXTS.length)]
    const rec = { $type: 'app.bsky.feed.post', text: `${text} #${index}.${i}`, createdAt: time() }
    if (langs) rec.langs = langs
    return create('app.bsky.feed.post', rec)
  })
  const refs = (made, n, type) =>
    Array.from({ length: n }, (_, i) =>
      create(type, { $type: type, subject: made[(i * 7 + index) % made.length], createdAt: time() }),
    )
  const did = () => 'did:plc:' + Array.from({ length: 24 }, () => B32[Math.floor(r() * 32)]).join('')
  const followWrites = Array.from({ length: follows }, () =>
    create('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject: did(), createdAt: time() }),
  )
  return {
    postWrites,
    rest: (made) => [
      ...refs(made, likes, 'app.bsky.feed.like'),
      ...refs(made, reposts, 'app.bsky.feed.repost'),
      ...followWrites,
    ],
  }
}

// Create bulk account `index` and write its records; returns its entry for the JSON line.
async function seedBulk(sc, index, total) {
  const name = `bulk${String(index).padStart(3, '0')}`
  const password = `${name}-pass`
  const acc = await sc.createAccount(name, { handle: `${name}.test`, email: `${name}@sandbox.test`, password })
  const write = async (writes) => {
    const out = []
    for (let i = 0; i < writes.length; i += BULK_BATCH) {
      const res = await sc.agent.com.atproto.repo.applyWrites(
        { repo: acc.did, validate: true, writes: writes.slice(i, i + BULK_BATCH) },
        { encoding: 'application/json', headers: sc.getHeaders(acc.did) },
      )
      out.push(...res.data.results.map((x) => ({ uri: x.uri, cid: x.cid })))
    }
    return out
  }
  const plan = bulkPlan(index, total)
  const made = await write(plan.postWrites)
  const rest = await write(plan.rest(made))
  return { handle: acc.handle, did: acc.did, password, status: 'active', records: made.length + rest.length }
}

async function seedBulkAccounts(sc, count, total) {
  const out = new Array(count)
  let next = 0
  const worker = async () => {
    while (next < count && !closing) {
      const index = next++
      out[index] = await seedBulk(sc, index, total)
    }
  }
  await Promise.all(Array.from({ length: Math.min(BULK_PARALLEL, count) }, worker))
  return out
}

// ---------------------------------------------------------------- main
let network
let tmpDir
let starting = Promise.resolve() // the servers' creation, which shutdown must let finish
let closing = false

async function shutdown(reason, code = 0) {
  if (closing) return
  closing = true
  log(`shutting down (${reason})`)
  try {
    const net = network ?? (await starting.catch(() => undefined))
    if (net) await net.close()
  } catch (err) {
    log('error while closing:', err)
    code = code || 1
  }
  process.exit(code) // the 'exit' handler removes the temp dir
}

async function main() {
  tmpDir = await mkdtemp(path.join(os.tmpdir(), 'atrepo-sandbox-'))
  // TestPds puts the PDS's SQLite files and blobstore in fresh dirs under os.tmpdir(); point
  // that at our own temp dir so everything is removed on exit.
  process.env.TMPDIR = tmpDir
  // Only pass a port when one was asked for: TestPds spreads its config over its defaults, so
  // an explicit `port: undefined` would replace the free port it picked (PDS default 2583).
  const plcPort = Number(opts['plc-port'])
  const pdsPort = Number(opts['pds-port'])
  starting = TestNetworkNoAppView.create({
    plc: plcPort ? { port: plcPort } : {},
    pds: {
      ...(pdsPort ? { port: pdsPort } : {}),
      hostname: 'localhost',
    },
  })
  network = await starting
  if (closing) return
  log(`PLC ${network.plc.url}, PDS ${network.pds.url}`)

  const sc = network.getSeedClient()
  const agent = sc.agent
  const json = { encoding: 'application/json' }
  const adminHeaders = network.pds.adminAuthHeaders() // Basic admin:admin-pass

  const counts = {}
  const applyWrites = async (did, writes) => {
    const out = []
    for (let i = 0; i < writes.length; i += 100) {
      const chunk = writes.slice(i, i + 100) // PDS max is 200 writes per call
      const res = await agent.com.atproto.repo.applyWrites(
        { repo: did, validate: true, writes: chunk },
        { ...json, headers: sc.getHeaders(did) },
      )
      out.push(...res.data.results)
      counts[did] = (counts[did] ?? 0) + chunk.length
    }
    return out.map((r) => ({ uri: r.uri, cid: r.cid }))
  }
  const profile = async (did, displayName) => {
    const blob = await agent.com.atproto.repo.uploadBlob(await readFile(AVATAR), {
      encoding: 'image/jpeg',
      headers: sc.getHeaders(did),
    })
    return applyWrites(did, [
      create(
        'app.bsky.actor.profile',
        {
          $type: 'app.bsky.actor.profile',
          displayName,
          description: `${displayName} lives in the atrepo sandbox`,
          avatar: blob.data.blob,
          createdAt: nextTime(),
        },
        'self',
      ),
    ])
  }

  const accounts = {}
  for (const name of ['alice', 'bob', 'carol', 'dave']) {
    const password = `${name}-pass`
    const acc = await sc.createAccount(name, {
      handle: `${name}.test`,
      email: `${name}@sandbox.test`,
      password,
    })
    accounts[name] = { handle: acc.handle, did: acc.did, password }
  }
  const { alice, bob, carol, dave } = Object.fromEntries(
    Object.entries(accounts).map(([k, v]) => [k, v.did]),
  )
  log('accounts created')

  // bob: ~20 records
  await profile(bob, 'Bob')
  const bobPosts = await applyWrites(
    bob,
    Array.from({ length: 12 }, (_, i) => create('app.bsky.feed.post', postRecord(i))),
  )
  await applyWrites(bob, [
    ...[alice, carol, dave].map((d) =>
      create('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject: d, createdAt: nextTime() }),
    ),
    ...bobPosts.slice(0, 4).map((p) =>
      create('app.bsky.feed.like', { $type: 'app.bsky.feed.like', subject: p, createdAt: nextTime() }),
    ),
  ])

  // carol and dave: a few records each
  await profile(carol, 'Carol')
  await applyWrites(carol, [0, 1, 2, 3].map((i) => create('app.bsky.feed.post', postRecord(i))))
  await applyWrites(dave, [0, 1, 2].map((i) => create('app.bsky.feed.post', postRecord(i))))

  // alice: a few hundred records in many commits
  await profile(alice, 'Alice')
  const alicePosts = []
  for (let batch = 0; batch < 4; batch++) {
    alicePosts.push(
      ...(await applyWrites(
        alice,
        Array.from({ length: 25 }, (_, i) => create('app.bsky.feed.post', postRecord(batch * 25 + i))),
      )),
    )
  }
  const replies = []
  for (let i = 0; i < 30; i++) {
    const root = alicePosts[i % 10]
    const parent = i < 10 ? root : replies[i - 10]
    const [r] = await applyWrites(alice, [
      create('app.bsky.feed.post', postRecord(100 + i, { reply: { root, parent } })),
    ])
    replies.push(r)
  }
  const likeSubjects = [...bobPosts, ...alicePosts.slice(0, 60), ...replies.slice(0, 20)]
  const follows = [bob, carol, dave, ...Array.from({ length: 50 }, fakeDid)]
  await applyWrites(alice, [
    ...likeSubjects.map((subject) =>
      create('app.bsky.feed.like', { $type: 'app.bsky.feed.like', subject, createdAt: nextTime() }),
    ),
    ...follows.map((subject) =>
      create('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject, createdAt: nextTime() }),
    ),
    ...[...bobPosts.slice(0, 10), ...alicePosts.slice(50, 70)].map((subject) =>
      create('app.bsky.feed.repost', { $type: 'app.bsky.feed.repost', subject, createdAt: nextTime() }),
    ),
    ...[fakeDid(), fakeDid()].map((subject) =>
      create('app.bsky.graph.block', { $type: 'app.bsky.graph.block', subject, createdAt: nextTime() }),
    ),
  ])
  // some history: an update and two deletes through the single-record endpoints
  const hdr = { ...json, headers: sc.getHeaders(alice) }
  await agent.com.atproto.repo.putRecord(
    {
      repo: alice,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
      record: {
        $type: 'app.bsky.actor.profile',
        displayName: 'Alice (edited)',
        description: 'profile updated once',
        createdAt: nextTime(),
      },
    },
    hdr,
  )
  for (const p of alicePosts.slice(98, 100)) {
    await agent.com.atproto.repo.deleteRecord(
      { repo: alice, collection: 'app.bsky.feed.post', rkey: p.uri.split('/').pop() },
      hdr,
    )
    counts[alice] -= 1
  }
  log(`alice: ${counts[alice]} records`)

  // bob deactivates himself
  await agent.com.atproto.server.deactivateAccount({}, { ...json, headers: sc.getHeaders(bob) })
  // carol is taken down by the admin
  await agent.com.atproto.admin.updateSubjectStatus(
    {
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: carol },
      takedown: { applied: true, ref: 'sandbox-takedown' },
    },
    { ...json, headers: adminHeaders },
  )
  // dave deletes his account through the user flow; the "email" is caught at the mailer
  const mailer = network.pds.ctx.mailer
  let deleteToken
  const origSend = mailer.sendAccountDelete
  mailer.sendAccountDelete = async (params, mailOpts) => {
    deleteToken = params.token
    return origSend.call(mailer, params, mailOpts)
  }
  await agent.com.atproto.server.requestAccountDelete(undefined, { headers: sc.getHeaders(dave) })
  mailer.sendAccountDelete = origSend
  if (!deleteToken) throw new Error('no account-deletion token was mailed')
  await agent.com.atproto.server.deleteAccount(
    { did: dave, password: accounts.dave.password, token: deleteToken },
    json,
  )
  await network.processAll()

  const bulkStart = performance.now()
  const bulk = await seedBulkAccounts(sc, BULK_ACCOUNTS, BULK_RECORDS)
  if (closing) return
  if (BULK_ACCOUNTS) {
    const secs = (performance.now() - bulkStart) / 1000
    log(`${BULK_ACCOUNTS} bulk accounts x ${BULK_RECORDS} records in ${secs.toFixed(1)} s`)
  }

  const status = { alice: 'active', bob: 'deactivated', carol: 'takendown', dave: 'deleted' }
  const startupMs = Math.round(performance.now() - t0)
  const out = {
    plc_url: network.plc.url,
    pds_url: network.pds.url,
    admin_password: 'admin-pass',
    accounts: [
      ...Object.entries(accounts).map(([name, a]) => ({
        ...a,
        status: status[name],
        // records in the repository now; a deleted account's repository is destroyed
        records: status[name] === 'deleted' ? 0 : counts[a.did],
      })),
      ...bulk,
    ],
    startup_ms: startupMs,
  }
  process.stdout.write(JSON.stringify(out) + '\n')
  log(`ready in ${startupMs} ms`)
}

// Synchronously, as the very last thing: an async rm could race with a half-started server
// still creating directories under TMPDIR.
process.on('exit', () => {
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true, maxRetries: 3 })
})
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
process.stdin.on('end', () => shutdown('stdin closed'))
process.stdin.on('error', () => shutdown('stdin error'))
process.stdin.resume()

main().catch((err) => {
  if (!closing) log('startup failed:', err) // else: just the servers closing under the seeding
  shutdown('error', 1)
})
