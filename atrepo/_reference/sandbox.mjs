// A real local PLC directory + PDS (the pinned reference implementation) for network tests.
//
//   node sandbox.mjs [--plc-port N] [--pds-port N] [--bulk-accounts N --bulk-records M]
//                    [--pds-count N] [--relay-port N]     (cwd: atrepo/_reference)
//
// Starts @atproto/dev-env's TestNetworkNoAppView (in-memory PLC, given a working /export; PDS
// on SQLite in a temp dir), seeds four accounts in different states, prints ONE line of JSON to
// stdout:
//
//   {"plc_url", "pds_url", "pds_urls", "relay_url", "admin_password", "accounts": [{"handle",
//    "did", "password", "status": "active"|"deactivated"|"takendown"|"deleted", "records": N,
//    "pds"}], "startup_ms"}
//
// and keeps serving until stdin closes or SIGTERM/SIGINT, then closes the servers, removes the
// temp dir and exits 0. Everything else (progress, server logs) goes to stderr.
// Port 0 (default) = pick a free port (dev-env uses get-port).
//
// --bulk-accounts N (at most 5000) adds N more active accounts, bulk000.test ... bulk999.test,
// bulk1000.test ... (password "bulk000-pass"),
// each with M records (--bulk-records, default 100) of several collections: ~45 % posts (with
// langs), ~30 % likes and ~10 % reposts of its own posts, ~15 % follows. They are written with
// applyWrites, 200 writes per call, a few accounts at a time, so that large sandboxes for
// benchmarks and multi-repo tests seed quickly. Their content is deterministic per index
// (their TIDs, CIDs and DIDs are not).
//
// --pds-count N (default 1) starts N - 1 more PDSes (dev-env's TestPds) on the same PLC. The
// four named accounts live on the first; bulk account i lives on PDS i % N; and one more account,
// moved.test, is created on the first PDS and then migrated to the second with the PDS's own
// account-migration flow (service-auth createAccount, importRepo, a PLC operation signed by the
// first PDS's rotation key and submitted by the second, activateAccount). The first PDS's copy
// is deliberately left active (the migration's last step, deactivating it, is skipped), so that
// host still lists the DID and serves its stale repository while the DID document names the
// second PDS. Its entry carries "moved_from" (the first PDS's URL) and "records_at_moved_from".
//
// The relay (--relay-port, always started): a small loopback XRPC service on 127.0.0.1 that
// answers com.atproto.sync.listHosts and getHostStatus for the sandbox's PDSes (accountCount =
// what the PDS's own listRepos lists, seq = its sequencer's newest event) and
// com.atproto.identity.resolveHandle for every PDS's handles (it asks each PDS in turn).
import { rmSync } from 'node:fs'
import http from 'node:http'
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

const MAX_PDS_COUNT = 16 // each PDS is a whole server in this process (~10-20 MB, ~0.5 s to start)

const { values: opts } = parseArgs({
  options: {
    'plc-port': { type: 'string', default: '0' },
    'pds-port': { type: 'string', default: '0' },
    'bulk-accounts': { type: 'string', default: '0' },
    'bulk-records': { type: 'string', default: '100' },
    'pds-count': { type: 'string', default: '1' },
    'relay-port': { type: 'string', default: '0' },
  },
})
const MAX_BULK_ACCOUNTS = 10000 // a host of thousands of accounts: the export's memory test
const BULK_ACCOUNTS = Number(opts['bulk-accounts'])
const BULK_RECORDS = Number(opts['bulk-records'])
if (!(Number.isInteger(BULK_ACCOUNTS) && BULK_ACCOUNTS >= 0 && BULK_ACCOUNTS <= MAX_BULK_ACCOUNTS)
    || !(Number.isInteger(BULK_RECORDS) && BULK_RECORDS >= 2)) {
  console.error(`--bulk-accounts must be 0..${MAX_BULK_ACCOUNTS} and --bulk-records at least 2`)
  process.exit(2)
}
const PDS_COUNT = Number(opts['pds-count'])
if (!(Number.isInteger(PDS_COUNT) && PDS_COUNT >= 1 && PDS_COUNT <= MAX_PDS_COUNT)) {
  console.error(`--pds-count must be 1..${MAX_PDS_COUNT}`)
  process.exit(2)
}

// Deep import of the class exported by '@atproto/dev-env': the package index also loads the
// appview/ozone/bsync stacks, which costs ~2 s of startup and is not needed here.
const require = createRequire(import.meta.url)
const { TestNetworkNoAppView } = require('@atproto/dev-env/dist/network-no-appview.js')
const { TestPds } = require('@atproto/dev-env/dist/pds.js')
const { SeedClient } = require('@atproto/dev-env/dist/seed/client.js')
const { mockNetworkUtilities } = require('@atproto/dev-env/dist/util.js')
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

// Create bulk account `index` on `host` ({sc, url}) and write its records; returns its entry
// for the JSON line.
async function seedBulk(host, index, total) {
  const { sc } = host
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
  return {
    handle: acc.handle, did: acc.did, password, status: 'active',
    records: made.length + rest.length, pds: host.url,
  }
}

// Bulk account i goes to hosts[i % hosts.length].
async function seedBulkAccounts(hosts, count, total) {
  const out = new Array(count)
  let next = 0
  const worker = async () => {
    while (next < count && !closing) {
      const index = next++
      out[index] = await seedBulk(hosts[index % hosts.length], index, total)
    }
  }
  await Promise.all(Array.from({ length: Math.min(BULK_PARALLEL, count) }, worker))
  return out
}

// ---------------------------------------------------------------- the moved account
const MOVED_BEFORE = 12 // records written on the first PDS before the move (profile + posts)
const MOVED_AFTER = 5 // posts written on the second PDS after it

// Catch the token a PDS "mails" for `send` (e.g. 'sendPlcOperation') while `action` runs.
async function mailedToken(pds, send, action) {
  const mailer = pds.ctx.mailer
  const orig = mailer[send]
  let token
  mailer[send] = async (params, mailOpts) => {
    token = params.token
    return orig.call(mailer, params, mailOpts)
  }
  try {
    await action()
  } finally {
    mailer[send] = orig
  }
  if (!token) throw new Error(`no token was mailed by ${send}`)
  return token
}

// moved.test: created on `from` ({sc, url, pds}), migrated to `to` with the PDS's own
// account-migration endpoints, then written to there. The old account is not deactivated.
async function seedMovedAccount(from, to) {
  const handle = 'moved.test'
  const password = 'moved-pass'
  const email = 'moved@sandbox.test'
  const json = { encoding: 'application/json' }
  const acc = await from.sc.createAccount('moved', { handle, email, password })
  const did = acc.did
  const old = { headers: from.sc.getHeaders(did) }
  const oldAgent = from.sc.agent
  const newAgent = to.sc.agent
  const writeAll = async (agent, headers, writes) => {
    await agent.com.atproto.repo.applyWrites(
      { repo: did, validate: true, writes },
      { ...json, headers },
    )
    return writes.length
  }
  const profile = create('app.bsky.actor.profile', {
    $type: 'app.bsky.actor.profile',
    displayName: 'Moved',
    description: 'moved from the first sandbox PDS to the second',
    createdAt: nextTime(),
  }, 'self')
  const before = await writeAll(oldAgent, old.headers, [
    profile,
    ...Array.from({ length: MOVED_BEFORE - 1 }, (_, i) => create('app.bsky.feed.post', postRecord(200 + i))),
  ])

  // 1. the same DID on the new PDS (created deactivated), authorised by a service token
  const { data: server } = await newAgent.com.atproto.server.describeServer()
  const { data: auth } = await oldAgent.com.atproto.server.getServiceAuth(
    { aud: server.did, lxm: 'com.atproto.server.createAccount' },
    old,
  )
  const { data: created } = await newAgent.com.atproto.server.createAccount(
    { did, handle, email, password },
    { ...json, headers: { authorization: `Bearer ${auth.token}` } },
  )
  const fresh = { authorization: `Bearer ${created.accessJwt}` }
  // 2. the repository (no blobs to copy: the profile has no avatar)
  const car = await oldAgent.com.atproto.sync.getRepo({ did })
  await newAgent.com.atproto.repo.importRepo(car.data, {
    encoding: 'application/vnd.ipld.car',
    headers: fresh,
  })
  // 3. the identity: the new PDS's recommended credentials, signed by the old PDS (its
  //    rotation key is in the DID's rotationKeys) after the emailed confirmation, submitted by
  //    the new PDS to the PLC
  const { data: credentials } = await newAgent.com.atproto.identity.getRecommendedDidCredentials(
    undefined,
    { headers: fresh },
  )
  const token = await mailedToken(from.pds, 'sendPlcOperation', () =>
    oldAgent.com.atproto.identity.requestPlcOperationSignature(undefined, old),
  )
  const { data: signed } = await oldAgent.com.atproto.identity.signPlcOperation(
    { token, ...credentials },
    { ...json, headers: old.headers },
  )
  await newAgent.com.atproto.identity.submitPlcOperation(
    { operation: signed.operation },
    { ...json, headers: fresh },
  )
  await newAgent.com.atproto.server.activateAccount(undefined, { headers: fresh })
  // 4. life goes on at the new PDS (its commits are signed with the new PDS's key); the old
  //    copy stays as it was, active, and no longer matches the DID document's key
  const after = await writeAll(newAgent, fresh, Array.from({ length: MOVED_AFTER }, (_, i) =>
    create('app.bsky.feed.post', postRecord(300 + i)),
  ))
  return {
    handle, did, password, status: 'active', records: before + after, pds: to.url,
    moved_from: from.url, records_at_moved_from: before,
  }
}

// ---------------------------------------------------------------- the PLC's export
// dev-env's PLC runs on @did-plc/server's in-memory MockDatabase, which keeps every DID's
// indexed operations (`contents[did]`, oldest first, as `/{did}/log/audit` shows them) but
// whose `exportOps` returns [], so `/export` is always empty. Give the instance the Postgres
// Database's answer: every operation, nullified ones included, created strictly after `after`
// (a Date, or undefined for the start of the log), ordered by createdAt, at most `count`, as
// {did, operation, cid, nullified, createdAt} with the CID and the time as strings. Operations
// of one millisecond keep a fixed order (DIDs in the order they were first seen, each DID's in
// its log's order), as the log the Postgres table keeps on disk would.
function serveExport(db) {
  if (typeof db?.contents !== 'object' || typeof db.exportOps !== 'function') {
    throw new Error('the PLC database is not the in-memory one whose export sandbox.mjs serves')
  }
  db.exportOps = async (count, after) => {
    if (after !== undefined && Number.isNaN(after.getTime())) {
      // Postgres refuses such a timestamp (a 500); an empty page would read as the log's end
      throw new Error(`invalid export cursor: after=${after}`)
    }
    return Object.values(db.contents)
      .flat()
      .filter((op) => after === undefined || op.createdAt > after)
      .sort((a, b) => a.createdAt - b.createdAt) // stable: ties keep the order above
      .slice(0, count)
      .map((op) => ({
        did: op.did,
        operation: op.operation,
        cid: op.cid.toString(),
        nullified: op.nullified,
        createdAt: op.createdAt.toISOString(),
      }))
  }
}

// ---------------------------------------------------------------- the relay
const RELAY_DEFAULT_LIMIT = 200 // com.atproto.sync.listHosts: limit 1..1000, default 200
const RELAY_MAX_LIMIT = 1000

class XrpcError extends Error {
  constructor(status, error, message) {
    super(message)
    this.status = status
    this.error = error
  }
}

// What a relay says about `pds`: hostname (no scheme), accountCount (what the PDS's own
// listRepos lists), seq (its sequencer's newest event), status.
async function hostInfo(pds) {
  let accountCount = 0
  let cursor
  do {
    const url = new URL('/xrpc/com.atproto.sync.listRepos', pds.url)
    url.searchParams.set('limit', '1000')
    if (cursor) url.searchParams.set('cursor', cursor)
    const res = await fetch(url)
    if (!res.ok) throw new XrpcError(502, 'UpstreamFailure', `listRepos of ${pds.url}: ${res.status}`)
    const body = await res.json()
    accountCount += body.repos.length
    cursor = body.repos.length ? body.cursor : undefined
  } while (cursor)
  const seq = await pds.ctx.sequencer.curr()
  return { hostname: new URL(pds.url).host, ...(seq == null ? {} : { seq }), accountCount, status: 'active' }
}

function relayMethods(pdses) {
  const hostnames = pdses.map((pds) => new URL(pds.url).host)
  return {
    // Paged like the reference relay: the cursor is the id of the page's last host (ids are
    // 1-based, in the order the hosts were started), and it is given whenever a page is full.
    'com.atproto.sync.listHosts': async (params) => {
      const limitText = params.get('limit') ?? String(RELAY_DEFAULT_LIMIT)
      const limit = /^\d{1,4}$/.test(limitText) ? Number(limitText) : NaN
      if (!(limit >= 1 && limit <= RELAY_MAX_LIMIT)) {
        throw new XrpcError(400, 'InvalidRequest', `limit must be an integer 1..${RELAY_MAX_LIMIT}`)
      }
      const given = params.get('cursor') ?? '0'
      if (!/^\d{1,9}$/.test(given)) throw new XrpcError(400, 'InvalidRequest', 'malformed cursor')
      const cursor = Number(given)
      const page = pdses.slice(cursor, cursor + limit)
      const hosts = await Promise.all(page.map(hostInfo))
      return hosts.length === limit ? { cursor: String(cursor + limit), hosts } : { hosts }
    },
    'com.atproto.sync.getHostStatus': async (params) => {
      const index = hostnames.indexOf(params.get('hostname'))
      if (index < 0) throw new XrpcError(400, 'HostNotFound', 'host not found')
      return hostInfo(pdses[index])
    },
    // Every PDS answers for its own handles only (.test is a service domain of each): ask
    // them in order, as a client that knew all of them would.
    'com.atproto.identity.resolveHandle': async (params) => {
      const handle = params.get('handle') ?? ''
      for (const pds of pdses) {
        const url = new URL('/xrpc/com.atproto.identity.resolveHandle', pds.url)
        url.searchParams.set('handle', handle)
        const res = await fetch(url)
        if (res.ok) return res.json()
      }
      throw new XrpcError(400, 'InvalidRequest', 'Unable to resolve handle')
    },
    _health: async () => ({ version: 'atrepo-sandbox-relay' }),
  }
}

async function startRelay(pdses, port) {
  const methods = relayMethods(pdses)
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://relay')
    const name = url.pathname.startsWith('/xrpc/') ? url.pathname.slice(6) : undefined
    let status = 200
    let body
    try {
      if (req.method !== 'GET') throw new XrpcError(405, 'InvalidRequest', 'only GET (queries)')
      const method = Object.hasOwn(methods, name) ? methods[name] : undefined
      if (!method) throw new XrpcError(501, 'MethodNotImplemented', `${name ?? url.pathname} is not implemented by the sandbox relay`)
      body = await method(url.searchParams)
    } catch (err) {
      status = err instanceof XrpcError ? err.status : 500
      body = { error: err instanceof XrpcError ? err.error : 'InternalServerError', message: err.message }
    }
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
    res.end(JSON.stringify(body))
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

// ---------------------------------------------------------------- main
const servers = [] // what shutdown closes (newest first): the network, more PDSes, the relay
let tmpDir
let starting = Promise.resolve() // the servers' creation, which shutdown must let finish
let closing = false

async function shutdown(reason, code = 0) {
  if (closing) return
  closing = true
  log(`shutting down (${reason})`)
  try {
    await starting.catch(() => undefined)
    for (const server of servers.reverse()) await server.close()
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
  const startServers = async () => {
    const net = await TestNetworkNoAppView.create({
      plc: plcPort ? { port: plcPort } : {},
      pds: {
        ...(pdsPort ? { port: pdsPort } : {}),
        hostname: 'localhost',
      },
    })
    servers.push(net)
    serveExport(net.plc.ctx.db)
    const pdses = [net.pds]
    while (pdses.length < PDS_COUNT && !closing) {
      const pds = await TestPds.create({ didPlcUrl: net.plc.url, hostname: 'localhost' })
      servers.push(pds)
      mockNetworkUtilities(pds) // as TestNetworkNoAppView does for its PDS
      pdses.push(pds)
    }
    const relay = await startRelay(pdses, Number(opts['relay-port']))
    servers.push(relay)
    return { network: net, pdses, relay }
  }
  starting = startServers()
  const { network, pdses, relay } = await starting
  if (closing) return
  log(`PLC ${network.plc.url}, PDS ${pdses.map((p) => p.url).join(' ')}, relay ${relay.url}`)

  const sc = network.getSeedClient()
  const hosts = pdses.map((pds, i) => ({
    pds,
    url: pds.url,
    sc: i === 0 ? sc : new SeedClient({ plc: network.plc, pds }, pds.getClient()),
  }))
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
  const deleteToken = await mailedToken(network.pds, 'sendAccountDelete', () =>
    agent.com.atproto.server.requestAccountDelete(undefined, { headers: sc.getHeaders(dave) }),
  )
  await agent.com.atproto.server.deleteAccount(
    { did: dave, password: accounts.dave.password, token: deleteToken },
    json,
  )
  const moved = PDS_COUNT > 1 ? [await seedMovedAccount(hosts[0], hosts[1])] : []
  if (moved.length) log(`moved.test moved from ${hosts[0].url} to ${hosts[1].url}`)

  const bulkStart = performance.now()
  const bulk = await seedBulkAccounts(hosts, BULK_ACCOUNTS, BULK_RECORDS)
  if (closing) return
  if (BULK_ACCOUNTS) {
    const secs = (performance.now() - bulkStart) / 1000
    log(`${BULK_ACCOUNTS} bulk accounts x ${BULK_RECORDS} records in ${secs.toFixed(1)} s`)
  }
  await Promise.all(pdses.map((pds) => pds.processAll()))

  const status = { alice: 'active', bob: 'deactivated', carol: 'takendown', dave: 'deleted' }
  const startupMs = Math.round(performance.now() - t0)
  const out = {
    plc_url: network.plc.url,
    pds_url: network.pds.url,
    pds_urls: pdses.map((pds) => pds.url),
    relay_url: relay.url,
    admin_password: 'admin-pass',
    accounts: [
      ...Object.entries(accounts).map(([name, a]) => ({
        ...a,
        status: status[name],
        // records in the repository now; a deleted account's repository is destroyed
        records: status[name] === 'deleted' ? 0 : counts[a.did],
        pds: network.pds.url,
      })),
      ...moved,
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
