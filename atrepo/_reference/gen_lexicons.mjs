#!/usr/bin/env node
// Writes the lexicon documents shipped by the pinned @atproto/api as JSON files, one per
// document, named by NSID: the source of atrepo.lexicon's declared table schemas and of
// atrepo.validate_record. Run on demand after bumping @atproto/api; tests/unit/test_lexicon.py
// runs it into a temporary directory and fails when the checked-in copy differs.
//
//   node gen_lexicons.mjs [--out DIR]     (default: ../lexicon/documents)
//
// Run with atrepo/_reference as cwd (or anywhere: imports resolve relative to this file).

import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const { schemas } = require('@atproto/api/dist/client/lexicons.js')
const { version } = require('@atproto/api/package.json')

const args = process.argv.slice(2)
const outIndex = args.indexOf('--out')
const out = outIndex >= 0 ? args[outIndex + 1] : path.join(HERE, '..', 'lexicon', 'documents')
if (!out) {
  console.error('usage: node gen_lexicons.mjs [--out DIR]')
  process.exit(2)
}

fs.mkdirSync(out, { recursive: true })
const written = new Set()
const write = (name, value) => {
  fs.writeFileSync(path.join(out, name), JSON.stringify(value, null, 2) + '\n')
  written.add(name)
}
for (const doc of [...schemas].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
  write(`${doc.id}.json`, doc)
}
write('_source.json', { package: '@atproto/api', version, documents: schemas.length })
// documents the pinned package no longer ships must not linger
for (const name of fs.readdirSync(out)) {
  if (name.endsWith('.json') && !written.has(name)) fs.rmSync(path.join(out, name))
}
console.log(`wrote ${schemas.length} lexicon documents from @atproto/api ${version} to ${out}`)
