#!/usr/bin/env node
// Generates records of every record type in @atproto/api's lexicons, valid ones and
// deliberately broken ones, and labels each with the reference validator
// (@atproto/lexicon's Lexicons.assertValidRecord): the ground truth for
// atrepo.validate_record (tests/unit/test_lexicon_validation.py). Deterministic in --seed.
//
//   node gen_records.mjs --count N --seed S > records.jsonl
//
// One JSON line per record: {"record": <atproto JSON data model>, "valid": bool,
// "error": <the reference's message or null>, "mutation": <what was changed or null>}.
// Run with atrepo/_reference as cwd (or anywhere: imports resolve relative to this file).

import { createRequire } from 'node:module'
import { createCid } from '@atproto/lex-data'

const require = createRequire(import.meta.url)
const { schemas } = require('@atproto/api/dist/client/lexicons.js')
const { Lexicons, jsonToLex } = require('@atproto/lexicon')

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}
const COUNT = Number(opt('count', '10000'))
const SEED = opt('seed', 'lexicon')

// mulberry32 seeded from the seed string: every record follows from --seed
let state = [...SEED].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 2654435761) >>> 0, 7)
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0
  let t = state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1))
const pick = (items) => items[Math.floor(rand() * items.length)]
const chance = (p) => rand() < p
const bytes = (n) => Uint8Array.from({ length: n }, () => int(0, 255))

const lexicons = new Lexicons(schemas)
const defs = new Map()
for (const doc of schemas) {
  for (const [name, def] of Object.entries(doc.defs)) {
    defs.set(name === 'main' ? `lex:${doc.id}` : `lex:${doc.id}#${name}`, def)
  }
}
const resolve = (ref) => defs.get(ref) ?? defs.get(ref.replace(/#main$/, ''))
const recordTypes = schemas.filter((d) => d.defs.main?.type === 'record').map((d) => d.id)

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const TID_FIRST = '234567abcdefghij'
const s32 = (n) => Array.from({ length: n }, () => pick([...B32])).join('')
const tid = () => pick([...TID_FIRST]) + s32(12)
const did = () => pick([`did:plc:${s32(24)}`, `did:web:host${int(0, 99)}.example.com`,
  'did:web:localhost%3A8080', 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme',
  'did:example:a:b_c.d-e'])
const handle = () => pick([`user${int(0, 9999)}.${pick(['test', 'bsky.social', 'example.com'])}`,
  'Mixed-Case.Example.COM', 'xn--ls8h.example', `a.${'b'.repeat(63)}.org`, '0.example.io'])
const cid = () => createCid(0x71, 0x12, bytes(32)).toString()
const WORDS = ['hello', 'world', 'atproto', 'bluesky', 'olá', 'coração', 'データ', '日本語',
  'naïve', 'e\u0301', '🦋', '👍🏽', '👨‍👩‍👧', '🇫🇷', '한국어', 'Ωmega', 'ok', '#tag', 'https://x.y']
const text = (maxBytes, maxGraphemes, minBytes = 0) => {
  const words = []
  const target = int(0, 12)
  for (let i = 0; i < target; i++) words.push(pick(WORDS))
  let out = words.join(' ')
  while (Buffer.byteLength(out) < minBytes) out += 'x'
  const fits = (s) => (maxBytes === undefined || Buffer.byteLength(s) <= maxBytes) &&
    (maxGraphemes === undefined || [...new Intl.Segmenter().segment(s)].length <= maxGraphemes)
  while (!fits(out) && out.length > 0) out = [...out].slice(0, -1).join('')
  return out
}
const datetime = () => {
  const year = chance(0.9) ? int(2015, 2030) : pick([1970, 1989, 1990, 2100, 2101, 2500, 1])
  const pad = (n, w = 2) => String(n).padStart(w, '0')
  const base = `${pad(year, 4)}-${pad(int(1, 12))}-${pad(int(1, 28))}T${pad(int(0, 23))}:` +
    `${pad(int(0, 59))}:${pad(int(0, 59))}`
  return base + pick(['.000Z', `.${pad(int(0, 999), 3)}Z`, 'Z', '+05:30', '-08:00',
    `.${pad(int(0, 999999), 6)}+00:00`])
}
const FORMATS = {
  datetime,
  uri: () => pick([`https://example.com/${s32(6)}`, 'https://example.com/café?q=1#x',
    'mailto:someone@example.com', 'urn:isbn:0451450523', 'http://[::1]:8080/']),
  'at-uri': () => pick([`at://${did()}/app.bsky.feed.post/${tid()}`,
    `at://${handle()}/app.bsky.feed.post/${tid()}`, `at://${did()}`,
    `at://${did()}/app.bsky.graph.list/${tid()}/`, `at://${did()}/app.bsky.feed.post/${tid()}#/text`,
    `at://${did()}/com.example.thing/any~key?x=1`]),
  did,
  handle,
  'at-identifier': () => (chance(0.5) ? did() : handle()),
  nsid: () => pick(['app.bsky.feed.post', 'com.example.thing', 'app.bsky.graph.follow',
    'com.Example.UpperCase', 'net.users.bob.ping', 'a-0.b-1.c', 'cn.8.lex.stuff']),
  cid,
  language: () => pick(['en', 'pt-BR', 'ja', 'de', 'zh-Hant-TW', 'es-419', 'x-private']),
  tid,
  'record-key': () => pick([tid(), 'self', 'a-b_c.d~e:f', '...', 'x'.repeat(512), '_']),
}
const BAD_FORMATS = {
  datetime: ['yesterday', '2023-13-01T00:00:00Z', '2023-02-30T00:00:00Z', '2023-01-01',
    '2023-01-01T25:61:00Z', '', '2023-01-01 00:00:00Z'],
  uri: ['not a uri', '', 'https://exa mple.com', 'https:///x', 'ftp:'],
  'at-uri': ['https://example.com', 'at://', 'not an at uri', 'at://did:plc:abc/notnsid',
    'at://did:plc:abc/app.bsky.feed.post/x#frag', 'at://did:plc:abc/app.bsky.feed.post/é',
    'at://bad handle/x'],
  did: ['did:', 'plc:abc', 'did:plc', 'DID:PLC:abc', '', 'did:plc:abc:', 'did:plc:abc%',
    'did:PLC:abc', 'did:plc:a b'],
  handle: ['-bad-.test', 'nodot', '', 'a..b', 'user.123', `${'a'.repeat(64)}.test`, 'a_b.test',
    'trailing.dot.'],
  'at-identifier': ['', 'not valid!', 'did:'],
  nsid: ['notnsid', 'a..b.c', '1.2.3', 'com.example.with-hyphen', 'com.example.1digit',
    'com.example', 'a.b.c.', `com.example.${'x'.repeat(64)}`],
  cid: ['notacid', '', 'bafy'],
  language: ['english!', '', '123', 'e'],
  tid: ['3jzfcijpj2z2', 'short', 'AAAAAAAAAAAAA', 'kjzfcijpj2z2a', '3jzfcijpj2z2a1'],
  'record-key': ['', '.', '..', 'has space', 'a/b', 'x'.repeat(513), 'a#b'],
}

// Generate a valid value for `def`; `nodes` collects [path, def] for the mutations.
const gen = (def, path, nodes, depth) => {
  nodes.push([path, def])
  switch (def.type) {
    case 'ref':
      return gen(resolve(def.ref), path, nodes, depth + 1)
    case 'union': {
      const ref = pick(def.refs)
      const value = gen(resolve(ref), path, nodes, depth + 1)
      return { $type: ref.replace(/^lex:/, '').replace(/#main$/, ''), ...value }
    }
    case 'object': {
      const out = {}
      const required = new Set(def.required ?? [])
      for (const [name, prop] of Object.entries(def.properties ?? {})) {
        if (required.has(name) || (depth < 6 && chance(0.55))) {
          out[name] = gen(prop, [...path, name], nodes, depth + 1)
        }
      }
      return out
    }
    case 'array': {
      const lo = def.minLength ?? 0
      const hi = Math.max(lo, Math.min(def.maxLength ?? 3, depth < 4 ? 3 : 1))
      return Array.from({ length: int(lo, hi) }, (_, i) => gen(def.items, [...path, i], nodes, depth + 1))
    }
    case 'string':
      if (def.const !== undefined) return def.const
      if (def.enum) return pick(def.enum)
      if (def.format) return FORMATS[def.format]()
      if (def.knownValues && chance(0.7)) return pick(def.knownValues)
      return text(def.maxLength, def.maxGraphemes, def.minLength ?? 0)
    case 'integer': {
      if (def.const !== undefined) return def.const
      if (def.enum) return pick(def.enum)
      return int(def.minimum ?? 0, def.maximum ?? 1_000_000)
    }
    case 'boolean':
      return def.const ?? chance(0.5)
    case 'bytes': {
      const n = int(def.minLength ?? 0, Math.min(def.maxLength ?? 64, 64))
      return { $bytes: Buffer.from(bytes(n)).toString('base64').replace(/=+$/, '') }
    }
    case 'cid-link':
      return { $link: cid() }
    case 'blob':
      return { $type: 'blob', ref: { $link: createCid(0x55, 0x12, bytes(32)).toString() },
        mimeType: pick(def.accept ?? ['image/jpeg']).replace('*', 'png'), size: int(1, 1_000_000) }
    case 'unknown':
      return { $type: 'com.example.thing', note: text(40) }
    default:
      throw new Error(`cannot generate ${def.type} at ${path.join('/')}`)
  }
}

const WRONG = [0, 1.5, -7, true, false, 'text', '', null, [], [1, 'a'], {}, { a: 1 },
  { $link: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }]

const setAt = (obj, path, value) => {
  let target = obj
  for (const key of path.slice(0, -1)) target = target[key]
  const last = path[path.length - 1]
  if (value === undefined) {
    if (Array.isArray(target)) target.splice(last, 1)
    else delete target[last]
  } else target[last] = value
}
const getAt = (obj, path) => path.reduce((o, k) => (o == null ? undefined : o[k]), obj)

// which nodes each kind of mutation below can change
const APPLIES = {
  2: (n) => n.type === 'string' && (n.maxLength || n.maxGraphemes),
  3: (n) => n.type === 'string' && n.format,
  4: (n) => n.type === 'integer',
  5: (n) => n.type === 'union',
  6: (n) => n.type === 'array',
  9: (n) => n.type === 'string' && (n.enum || n.const !== undefined),
  11: (n) => n.type === 'string' && n.format === 'datetime',
  12: (n) => n.type === 'string' && n.maxGraphemes !== undefined,
}

// grapheme clusters that are more than one code point, for strings at maxGraphemes
const CLUSTERS = ['👨‍👩‍👧‍👦', '🇫🇷', 'e\u0301\u0302', '👍🏽', '각', 'क्षि', 'न', 'स्ते',
  '\r\n', '🏳️‍🌈', '1️⃣', 'ก่', 'aำ', 'ক্ষ', '\u0600a', '🧑🏽‍💻', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', 'ᄀᄀᄀ',
  'நி', 'a\u200d', '\u200d😀', 'x\ufe0f', 'é', 'データ']

// Apply one change to the record; returns a description (many make it invalid, some not).
const mutate = (record, nodes, def) => {
  const kind = int(0, 12)
  const fits = APPLIES[kind] ?? (() => true)
  const candidates = nodes.filter(([p, n]) => p.length > 0 && fits(n))
  const [path, node] = pick(candidates.length ? candidates : nodes.filter(([p]) => p.length > 0))
  const here = getAt(record, path)
  if (kind === 0 && def.record.required?.length) {
    const name = pick(def.record.required)
    delete record[name]
    return `drop required ${name}`
  }
  if (kind === 1) {
    setAt(record, path, pick(WRONG))
    return `wrong type at ${path.join('/')}`
  }
  if (kind === 2 && node.type === 'string' && (node.maxLength || node.maxGraphemes)) {
    const big = node.maxGraphemes && chance(0.5)
      ? '👍🏽'.repeat(node.maxGraphemes + 1)
      : 'x'.repeat((node.maxLength ?? node.maxGraphemes * 10) + 1)
    setAt(record, path, big)
    return `too long at ${path.join('/')}`
  }
  if (kind === 3 && node.type === 'string' && node.format) {
    setAt(record, path, pick(BAD_FORMATS[node.format]))
    return `bad ${node.format} at ${path.join('/')}`
  }
  if (kind === 4 && node.type === 'integer') {
    setAt(record, path, pick([(node.maximum ?? 10) + 1, (node.minimum ?? 0) - 1, 2 ** 40]))
    return `integer out of range at ${path.join('/')}`
  }
  if (kind === 5 && node.type === 'union' && here && typeof here === 'object') {
    here.$type = pick(['com.example.other', 'app.bsky.embed.nonsense', 42])
    return `union $type at ${path.join('/')}`
  }
  if (kind === 6 && node.type === 'array' && Array.isArray(here) && here.length) {
    while (here.length <= (node.maxLength ?? 4)) here.push(here[0])
    return `array too long at ${path.join('/')}`
  }
  if (kind === 7) {
    record[pick(['extraField', 'via2', 'x'])] = pick(WRONG)
    return 'undeclared field'
  }
  if (kind === 8) {
    record.$type = pick(['app.bsky.feed.posts', 'com.example.record', ''])
    return 'record $type'
  }
  if (kind === 9 && node.type === 'string' && (node.enum || node.const !== undefined)) {
    setAt(record, path, 'not-in-enum')
    return `enum at ${path.join('/')}`
  }
  if (kind === 10) {
    setAt(record, path, undefined)
    return `drop ${path.join('/')}`
  }
  if (kind === 12 && node.type === 'string' && node.maxGraphemes !== undefined) {
    const n = node.maxGraphemes + int(-1, 1)
    const parts = Array.from({ length: Math.max(n, 0) }, () => pick(CLUSTERS))
    setAt(record, path, parts.join(''))
    return `graphemes near the limit at ${path.join('/')}`
  }
  if (kind === 11 && node.type === 'string' && node.format === 'datetime') {
    setAt(record, path, pick(['1970-01-01T00:00:00Z', '0001-01-01T00:00:00Z',
      '2200-01-01T00:00:00.000Z', '1989-12-31T23:59:59Z', '2023-06-01T12:00:00']))
    return `edge datetime at ${path.join('/')}`
  }
  setAt(record, path, pick(WRONG))
  return `wrong type at ${path.join('/')}`
}

for (let i = 0; i < COUNT; i++) {
  const type = recordTypes[i % recordTypes.length]
  const def = resolve(`lex:${type}`)
  const nodes = []
  const record = { $type: type, ...gen(def.record, [], nodes, 0) }
  let mutation = null
  if (chance(0.6)) mutation = mutate(record, nodes, def)
  let valid = true
  let error = null
  try {
    lexicons.assertValidRecord(type, jsonToLex(record))
  } catch (err) {
    valid = false
    error = String(err.message ?? err)
  }
  process.stdout.write(JSON.stringify({ record, valid, error, mutation }) + '\n')
}
