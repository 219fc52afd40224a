#!/usr/bin/env python3
"""Fuzz the compiled core through its Python entry points, against the pure Python reference.

    python benchmarks/fuzz_core.py [--runs 1000000] [--differential-every 16] [--seed 1]

atheris (libFuzzer) mutates seeds taken from the fixtures: the shipped sample CAR, small
repositories built here, hand-made MST nodes, and record blocks of the generated corpora.
The first byte of an input picks the target, the rest is the input:

* even: one record block through ``_core.record_json``;
* odd: a CAR through the core: index it, fetch its commit, walk its tree, decode its records
  into a polars frame (``atrepo._accel``, the path ``atrepo.read_car`` takes).

Any exception other than an :class:`~atrepo.AtrepoError` is a crash, and so is a panic (the
core's guard raises it as a ``CarError`` with ``panic`` in its fields). Every
``--differential-every``-th input also goes through the reference
(``tests/unit/_core_diff.py``) and the outcomes must be equal.
libFuzzer's ``-timeout`` and ``-rss_limit_mb`` turn a hang or runaway memory into a crash.
The atrepo Python modules are instrumented, so the reference's branches guide the mutations;
the Rust code itself is not instrumented (this is mutation fuzzing as far as it goes).

libFuzzer ends the process: "Done N runs in S second(s)" and exit status 0 when every input
passed; a crash prints the input and its traceback, saves it as ``crash-*`` and exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "unit"))

with atheris.instrument_imports(include=["atrepo"]):
    import polars as pl

    import atrepo
    from atrepo import _accel, cbor
    from atrepo.car._framing import parse_header
    from atrepo.cid import cid_for
    from atrepo.errors import AtrepoError
    from atrepo.testing import encode_car, make_repo_car

import _core_diff  # noqa: E402

COUNT = {"runs": 0}


def _seeds() -> list[bytes]:
    """Seed inputs, each with its target byte in front."""
    cars = [(ROOT / "examples" / "data" / "sample.car").read_bytes()]
    cars.append(make_repo_car({"app.bsky.feed.post/3k2a": {"$type": "app.bsky.feed.post",
                                                           "text": "hi", "createdAt": "x"}})[0])
    cars.append(make_repo_car({f"com.example.x/{i:04d}": {"n": i, "b": b"\x00" * i}
                               for i in range(12)})[0])
    node = cbor.encode({"e": [], "l": None})
    commit = cbor.encode({"data": cid_for(node), "did": "did:plc:x", "prev": None, "rev": "r",
                          "sig": b"", "version": 3})
    cars.append(encode_car([cid_for(commit)], [(bytes(cid_for(commit)), commit),
                                               (bytes(cid_for(node)), node)]))
    records = [cbor.encode({"$type": "x", "a": [1, -1, None, True], "b": b"\x01",
                            "l": cid_for(b"x"), "t": "é\x01\""})]
    corpus = ROOT / "benchmarks" / "data" / "10k" / "repo.car"
    if corpus.is_file():
        car = atrepo.car.read_car(corpus)
        records += [data for _cid, data in list(car)[:300] if data[:1] == b"\xa4"][:100]
    return [b"\x01" + c for c in cars] + [b"\x00" + r for r in records]


def _core_car(data: bytes) -> None:
    """The accelerated read of ``data``: index, commit, walk, records frame."""
    assert _accel.core is not None
    roots, start = parse_header(data, len(data))
    blocks = _accel.call(_accel.core.Car, data, start)
    if len(roots) != 1:
        return
    commit = _accel.call(blocks.get, bytes(roots[0]))
    if commit is None:
        return
    value = cbor.decode(commit)
    if not isinstance(value, dict) or not isinstance(value.get("data"), atrepo.CID):
        return
    tree = _accel.call(blocks.walk, bytes(value["data"]))
    columns, problems = _accel.call(blocks.records, "did:plc:fuzz", *tree.views())
    frame = pl.DataFrame(columns)
    assert frame.height == len(tree)
    assert all(frame["record"][i] is None for i, _text in problems)


def test_one_input(data: bytes, every: int) -> None:
    COUNT["runs"] += 1
    if not data:
        return
    target, body = data[0], data[1:]
    differential = COUNT["runs"] % every == 0
    if target % 2 == 0:
        assert _accel.core is not None
        text, problem = _accel.core.record_json(body)
        assert (text is None) != (problem is None)
        if differential:
            reference, core = _core_diff.record_outcome(body)
            assert core == reference, (reference, core)
        return
    try:
        _core_car(body)
    except AtrepoError as error:
        if "panic" in error.fields:   # the core's guard caught a panic: a crash all the same
            raise
    if differential:
        for outcomes in (_core_diff.records_outcome(body), _core_diff.walk_outcome(body)):
            reference, core = outcomes
            assert core == reference, (reference, core)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--differential-every", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=4096)
    args, rest = ap.parse_known_args()
    if not _accel.accelerated:
        print("the compiled core is not built (or ATREPO_PURE_PYTHON is set)", file=sys.stderr)
        return 2
    corpus = Path(tempfile.mkdtemp(prefix="atrepo-fuzz-"))
    for i, seed in enumerate(_seeds()):
        (corpus / f"seed-{i:04d}").write_bytes(seed)
    every = max(1, args.differential_every)
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}",
                   f"-max_len={args.max_len}", "-timeout=10", "-rss_limit_mb=3072",
                   "-print_final_stats=1", *rest, str(corpus)],
                  lambda data: test_one_input(data, every))
    print(json.dumps({"seeds": len(list(corpus.iterdir())), "runs": args.runs,
                      "differential_every": every, "corpus": str(corpus)}), flush=True)
    atheris.Fuzz()  # libFuzzer ends the process, printing "Done N runs in S second(s)"
    return 0


if __name__ == "__main__":
    sys.exit(main())
