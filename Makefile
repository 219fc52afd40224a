# Two commands do all set-up on a fresh machine:
#   make demo   start a local sandbox (reference PLC + PDS) and run the quickstart end to end
#   make test   install what the tests need (Python venv, pinned reference servers) and run them
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
NODE_OK := atrepo/_reference/node_modules/.installed
CORE_OK := $(VENV)/.core-built
RUST_SRC := $(wildcard rust/src/*.rs) rust/Cargo.toml rust/Cargo.lock

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# editable installs in "compat" mode: a .pth path entry to this directory, where the default
# mode installs an import finder that every interpreter start loads (with pathlib behind it)
EDITABLE := --config-settings editable_mode=compat -e

$(PY_OK): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(EDITABLE) ".[test]"
	touch $@ $(CORE_OK)

# the compiled core (atrepo._core, built from rust/ by setuptools-rust in the install above),
# rebuilt when its sources change; without a Rust toolchain the build is skipped with a
# warning and atrepo runs pure Python (ATREPO_PURE_PYTHON=1 forces that anyway)
# (the old library is renamed aside first, not overwritten: a process that has it loaded
# keeps its copy, where writing over the mapped file would crash it; a failed build puts it
# back, so a broken source never leaves the tree without its core)
$(CORE_OK): $(RUST_SRC) | $(PY_OK)
	for lib in atrepo/_core*.so; do [ ! -e "$$lib" ] || mv -f "$$lib" "$$lib.old"; done
	$(BIN)/python -m pip install --quiet --no-deps $(EDITABLE) . || { \
	  for old in atrepo/_core*.so.old; do [ ! -e "$$old" ] || mv -f "$$old" "$${old%.old}"; done; \
	  exit 1; }
	rm -f atrepo/_core*.so.old
	touch $@

# the reference implementation (@atproto/repo, @atproto/pds, dev-env), pinned by package-lock.json
$(NODE_OK): atrepo/_reference/package-lock.json atrepo/_reference/package.json
	cd atrepo/_reference && npm ci --no-audit --no-fund
	touch $@

# resolve, list_repos, get_repo, posts, new activity + diff, Parquet export, read back;
# the sandbox is stopped at the end, also on errors (examples/demo.py)
demo: $(PY_OK) $(CORE_OK) $(NODE_OK)
	$(BIN)/python examples/demo.py

# the suite runs on the compiled core (its differential tests run both paths): a core that
# did not build would turn them into skips, so that stops the run first
test: $(PY_OK) $(CORE_OK) $(NODE_OK)
	$(BIN)/python -c "import sys, atrepo; sys.exit(0 if atrepo.accelerated else \
	  'the compiled core (rust/) did not build: see the pip output above')"
	cd rust && cargo test --lib --quiet
	$(BIN)/python -m pytest

# the bench extra's packages (the peers, psutil, atheris), without reinstalling atrepo itself
# (which would rebuild the core under any process using it)
BENCH_OK := $(VENV)/.bench-installed
$(BENCH_OK): pyproject.toml | $(PY_OK)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))\
	  ['project']['optional-dependencies']['bench'], sep='\n')" > $(VENV)/bench-requirements.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/bench-requirements.txt
	touch $@

# the read tables of docs/performance.md: 1M (the core against libipld, bare and building the
# same frame, alternating; the slow peers are left out there), then 100k and 10k (every peer)
bench: $(PY_OK) $(CORE_OK) $(NODE_OK) $(BENCH_OK)
	$(BIN)/python benchmarks/make_corpus.py --sizes 10k,100k,1m
	$(BIN)/python benchmarks/bench_read.py --size 1m --runs 4 \
	  --only atrepo_records,libipld_walk,libipld_frame,atrepo_profile \
	  --out benchmarks/results/read-1m.json
	$(BIN)/python benchmarks/bench_read.py --size 100k
	$(BIN)/python benchmarks/bench_read.py --size 10k --runs 5

# fetch_records throughput at max_concurrency 1/4/16 and a cached get_repo, against a local
# sandbox PDS seeded with 50 accounts x 2,000 records (~3 min of seeding); see docs/performance.md
.PHONY: bench-fetch
bench-fetch: $(PY_OK) $(NODE_OK)
	$(BIN)/python benchmarks/bench_fetch.py

# atrepo.diff / atrepo.mst.diff vs atmst on two 1M-record snapshots 1,000 changes apart,
# the store's disk, and incremental vs full getRepo bytes (sandbox); see docs/performance.md
.PHONY: bench-diff
bench-diff: $(PY_OK) $(NODE_OK) $(BENCH_OK)
	$(BIN)/python benchmarks/make_corpus.py --sizes 1m --changes 1000
	$(BIN)/python benchmarks/bench_diff.py --size 1m

# the compiled core: peak RSS, the pruned read against one sha-256 and the phases of a 1M read,
# then a million fuzzed inputs through it (atheris, differential against the pure path)
.PHONY: bench-core fuzz-core
bench-core: $(PY_OK) $(CORE_OK) $(NODE_OK) $(BENCH_OK)
	$(BIN)/python benchmarks/make_corpus.py --sizes 10k,1m
	$(BIN)/python benchmarks/bench_core.py --size 1m

fuzz-core: $(PY_OK) $(CORE_OK) $(BENCH_OK)
	$(BIN)/python benchmarks/fuzz_core.py --runs 1000000

clean:
	rm -rf $(VENV) atrepo/_reference/node_modules tests/fixtures/generated rust/target atrepo/_core*.so

# snap.table("app.bsky.feed.post") vs records.filter(...).select(json_decode(dtype=...)) on the
# 1M-record corpus, cold (from read_car) and warm (records decoded); see docs/performance.md
.PHONY: bench-tables
bench-tables: $(PY_OK) $(NODE_OK)
	$(BIN)/python benchmarks/make_corpus.py --sizes 1m
	$(BIN)/python benchmarks/bench_tables.py --size 1m

# export of a sandbox host of 2,000 repositories x 20 records into a dataset: repos/s and
# records/s at max_concurrency 1/4/16, files, peak RSS at 250 vs 2,000 repositories, count and
# group_by against one file per repository, a refresh after 1% changed; then the 101-repository
# file comparison; see docs/performance.md and docs/datasets.md
.PHONY: bench-export
bench-export: $(PY_OK) $(NODE_OK)
	$(BIN)/python benchmarks/bench_export.py --accounts 2000 --records 20
	$(BIN)/python benchmarks/bench_export.py --compare 101 --records 60

# export of a 3-PDS sandbox (900 accounts x 20 records) here and on distributed.LocalCluster
# with 1 and 2 worker processes, without a rate limit and with the default one (where the
# per-host limits cap it), requests counted per origin (distributed comes with the test
# extra); see docs/performance.md
.PHONY: bench-dask
bench-dask: $(PY_OK) $(NODE_OK)
	$(BIN)/python benchmarks/bench_dask.py --accounts 900 --records 20
