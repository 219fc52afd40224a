"""Fuzz every public decoder of atrepo with mutated inputs: only AtrepoErrors may come out.

usage: python benchmarks/fuzz.py [--inputs N] [--seed S] [--only T1,T2] [--out DIR]
                                 [--json FILE] [--timeout SECONDS]

Each target gets ``--inputs`` inputs (default 100,000), mutated from seeds taken from the
shipped fixtures (``examples/data/*.car`` and ``sample.json``) and, when they are found,
the atproto interop vectors (``$ATREPO_INTEROP_DIR``, by default ``shared/interop`` beside
the checkout): syntax lines, did:keys and signatures, data-model JSON and DAG-CBOR. Small
signed repositories are rebuilt from the sample's records with ``atrepo.testing.make_repo_car``,
some with mutated record blocks, so that hostile records and MST nodes get past the CID
checks and reach the record decoder and the MST walk.

For every input a target may return or raise an :class:`atrepo.AtrepoError` subclass,
and nothing else. Any other exception, or an input that spends more than ``--timeout``
seconds of CPU time, is a failure: the input is saved under ``--out`` (raw bytes, or
``ascii()`` of a value) with its traceback, and the exit status is 1. An input that kills
the process (a crash in C or Rust code) is left in ``<out>/<target>-crashed.bin``. The
report prints, per target, the inputs run, the seconds taken and the outcomes counted by
exception class ("ok" when the call returned); ``--json`` writes the same figures. A run is
deterministic for one ``--seed`` (the rebuilt repositories are signed with RFC 6979
nonces), so the compiled core and the pure Python path (``ATREPO_PURE_PYTHON=1``) can be
compared outcome for outcome.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import hashlib
import json
import mmap
import os
import random
import resource
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

import atrepo
from atrepo import _accel, car, cbor, crypto, datamodel, mst, syntax
from atrepo.cid import CID, cid_for
from atrepo.errors import AtrepoError
from atrepo.testing import SigningKey, encode_car, make_repo_car

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
INTEROP = Path(os.environ.get("ATREPO_INTEROP_DIR") or ROOT.parent / "shared" / "interop")
SAMPLE_SHARE = 0.02  # of the CAR inputs mutate the whole 142 KB sample, the rest small repos
SMALL_REPOS = 8      # small repositories rebuilt from the sample's records
RECORDS_PER_REPO = 12

# --- seeds -----------------------------------------------------------------------------------


@dataclass
class Seeds:
    """Valid inputs to mutate, by kind."""

    cars: list[bytes] = field(default_factory=list)           # small signed repositories
    sample_car: bytes = b""
    sample_key: str = ""
    blocks: list[bytes] = field(default_factory=list)         # DAG-CBOR: records, nodes, commits
    records: list[bytes] = field(default_factory=list)        # record blocks only
    json_values: list[Any] = field(default_factory=list)      # JSON data-model values
    strings: list[str] = field(default_factory=list)          # identifiers, CIDs, keys, URIs
    cid_strings: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)             # did:keys
    multikeys: list[str] = field(default_factory=list)        # publicKeyMultibase values
    legacy_keys: list[str] = field(default_factory=list)      # raw points, base58btc
    signatures: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    interop_files: int = 0

    def counts(self) -> dict[str, int]:
        """The number of seeds of each kind, for the report."""
        return {"cars": len(self.cars) + bool(self.sample_car), "blocks": len(self.blocks),
                "records": len(self.records), "json": len(self.json_values),
                "strings": len(self.strings), "cid_strings": len(self.cid_strings),
                "keys": len(self.keys), "multikeys": len(self.multikeys),
                "signatures": len(self.signatures),
                "interop_files": self.interop_files}


class _DeterministicKey:
    """A private key whose signatures are RFC 6979 deterministic, so runs repeat exactly."""

    def __init__(self, number: int) -> None:
        self._key = ec.derive_private_key(number, ec.SECP256K1())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes, algorithm: ec.ECDSA) -> bytes:
        return self._key.sign(data, ec.ECDSA(algorithm.algorithm, deterministic_signing=True))


def _fixed_key(number: int) -> SigningKey:
    """A k256 signing key derived from ``number`` that signs the same bytes the same way."""
    key = SigningKey()
    key.private = _DeterministicKey(number)  # type: ignore[assignment]
    return key


def load_seeds() -> Seeds:
    """Collect the seeds from the shipped fixtures and, when present, the interop vectors."""
    seeds = Seeds()
    sample = (EXAMPLES / "sample.car").read_bytes()
    truth = json.loads((EXAMPLES / "sample.json").read_text())
    seeds.sample_car, seeds.sample_key = sample, truth["signing_key"]
    seeds.strings += [truth["did"], truth["signing_key"], truth["commit_cid"], truth["rev"],
                      truth["data_cid"], *truth["collections"]]
    carfile = car.read_car(sample)
    record_cids = set()
    for key, cid in mst.walk(carfile, CID.decode(truth["data_cid"])):
        record_cids.add(bytes(cid))
        seeds.strings += [key, f"at://{truth['did']}/{key}", str(cid)]
    for cid, block in carfile:
        seeds.blocks.append(block)
        if bytes(cid) in record_cids:
            seeds.records.append(block)
    seeds.json_values += [datamodel.to_json(cbor.decode(block)) for block in seeds.records[:200]]
    records = [cbor.decode(block) for block in seeds.records]
    keys = [key for key, _ in mst.walk(carfile, CID.decode(truth["data_cid"]))]
    for i in range(SMALL_REPOS):
        chosen = range(i * RECORDS_PER_REPO, (i + 1) * RECORDS_PER_REPO)
        repo, _ = make_repo_car({keys[j]: records[j] for j in chosen}, key=_fixed_key(i + 1))
        seeds.cars.append(repo)
    _load_interop(seeds)
    seeds.strings = sorted(set(seeds.strings))
    seeds.cid_strings = [text for text in seeds.strings if syntax.is_cid_string(text)]
    seeds.keys = [text for text in seeds.strings if text.startswith("did:key:z")]
    seeds.multikeys = [text.removeprefix("did:key:") for text in seeds.keys] + seeds.legacy_keys
    return seeds


def _load_interop(seeds: Seeds) -> None:
    if not INTEROP.is_dir():
        return
    for path in sorted((INTEROP / "syntax").glob("*.txt")):
        seeds.interop_files += 1
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                seeds.strings.append(line)
    fixtures = INTEROP / "data-model" / "data-model-fixtures.json"
    if fixtures.is_file():
        seeds.interop_files += 1
        for entry in json.loads(fixtures.read_text()):
            seeds.json_values.append(entry["json"])
            seeds.blocks.append(_b64(entry["cbor_base64"]))
            seeds.strings.append(entry["cid"])
    for path in sorted((INTEROP / "crypto").glob("*.json")):
        seeds.interop_files += 1
        for entry in json.loads(path.read_text()):
            if "signatureBase64" in entry:
                seeds.signatures.append((entry["publicKeyDid"], _b64(entry["messageBase64"]),
                                         _b64(entry["signatureBase64"])))
                seeds.strings.append(entry["publicKeyDid"])
                seeds.legacy_keys.append(entry["publicKeyMultibase"])
            else:
                seeds.strings.append(entry["publicDidKey"])


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


# --- mutations -------------------------------------------------------------------------------

INTERESTING_BYTES = [b"\x00", b"\xff", b"\x80", b"\x7f", b"\x1b" + b"\xff" * 8, b"\x3b",
                     b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x9f", b"\xbf", b"\xff",
                     b"\xd8\x2a", b"\xd8\x2a\x58\x25\x00", b"\xfb", b"\xf9\x3c\x00", b"\xf7",
                     b"\xa1\x61a", b"\x81" * 200, b"\x01\x71\x12\x20", b"\x01\x55\x12\x20",
                     b"\xc2", b"\xd9\xd9\xf7", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]
INTERESTING_CHARS = ["\x00", "\n", " ", "é", "\ud800", "\U0001f600", ":", "/", ".", "-", "%",
                     "#", "?", "@", "z", "b", "Q", "1", "T", "Z", "+", "=", "x-", "did:",
                     "at://", "did:key:z", "\u200b", "ß", "K"]


def mutate_bytes(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """Return ``data`` with one to four random byte-level mutations."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        pos = rng.randrange(len(out) + 1)
        kind = rng.randrange(9)
        if kind == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif kind == 2:
            out[pos:pos] = rng.choice(INTERESTING_BYTES)
        elif kind == 3:
            out[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif kind == 4:
            del out[pos:pos + rng.randrange(1, 17)]
        elif kind == 5:
            del out[pos:]
        elif kind == 6 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start:start + rng.randrange(1, 65)]
        elif kind == 7:
            other = rng.choice(pool)
            out[pos:] = other[rng.randrange(len(other) + 1):]
        else:
            chunk = rng.choice(INTERESTING_BYTES)
            out[pos:pos + len(chunk)] = chunk
    return bytes(out)


def mutate_str(rng: random.Random, text: str, pool: list[str]) -> str:
    """Return ``text`` with one to three random character-level mutations."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        pos = rng.randrange(len(text) + 1)
        kind = rng.randrange(7)
        if kind == 0:
            text = text[:pos] + rng.choice(INTERESTING_CHARS) + text[pos:]
        elif kind == 1:
            text = text[:pos] + text[pos + rng.randrange(1, 6):]
        elif kind == 2:
            text = text[:pos]
        elif kind == 3 and text:
            i = min(pos, len(text) - 1)
            text = text[:i] + chr(rng.randrange(0x20, 0x7f)) + text[i + 1:]
        elif kind == 4:
            text = text[:pos] + rng.choice(pool)[rng.randrange(3):] + text[pos:]
        elif kind == 5:
            piece = text[pos:pos + rng.randrange(1, 4)] or "a"
            text = text[:pos] + piece * rng.choice((2, 10, 300, 5000)) + text[pos:]
        else:
            text = text.upper() if rng.random() < 0.5 else text.lower()
    return text


def _hostile_json(rng: random.Random, strings: list[str]) -> Any:
    pick = rng.randrange(16)
    if pick == 0:
        return rng.choice([1.5, 123.0, -0.0, float("nan"), float("inf"), 1e300, 2.0**63])
    if pick == 1:
        return rng.choice([2**63, -(2**63) - 1, 2**64, 10**30, 10**5000, -(2**63)])
    if pick == 2:
        return {"$link": mutate_str(rng, rng.choice(strings), strings)}
    if pick == 3:
        return {"$bytes": mutate_str(rng, rng.choice(["AQI", "", "AAAA", "+/8"]), strings)}
    if pick == 4:
        return {"$type": rng.choice(["", None, 1, ["x"], "blob", "app.bsky.feed.post"])}
    if pick == 5:
        blob: dict[str, Any] = {"$type": "blob", "ref": {"$link": rng.choice(strings)},
                                "mimeType": "image/png", "size": 10}
        blob[rng.choice(list(blob))] = rng.choice([None, -1, 1.5, "", [], {"$link": "x"}])
        return blob
    if pick == 6:
        value: Any = rng.choice([[], {}])
        for _ in range(rng.choice((50, 127, 128, 129, 300, 5000))):
            value = [value] if rng.random() < 0.5 else {"a": value}
        return value
    if pick == 7:
        return {rng.choice([1, None, 1.5, ("a",)]): 1}
    if pick == 8:
        return rng.choice([(1,), b"x", {1, 2}, object(), bytearray(b"x"), range(3)])
    if pick == 9:
        return {"$link": rng.choice(strings), "$bytes": "AQI"}
    if pick == 10:
        return mutate_str(rng, rng.choice(strings), strings)
    return rng.choice([None, True, False, 0, -1, "", "x", [], {}])


def mutate_json(rng: random.Random, value: Any, strings: list[str]) -> Any:
    """Return a copy of ``value`` with one node (or a key) replaced by a hostile value."""
    if isinstance(value, (dict, list)) and value and rng.random() < 0.8:
        if isinstance(value, list):
            copy = list(value)
            i = rng.randrange(len(copy))
            copy[i] = mutate_json(rng, copy[i], strings)
            return copy
        copy_d = dict(value)
        key = rng.choice(list(copy_d))
        if rng.random() < 0.15:
            copy_d[mutate_str(rng, key, strings)] = copy_d.pop(key)
        else:
            copy_d[key] = mutate_json(rng, copy_d[key], strings)
        return copy_d
    return _hostile_json(rng, strings)


# --- targets ---------------------------------------------------------------------------------

# Each target makes one input from the seeds with its rng and runs the decoder on it to the
# end (iterating what is lazy). ``make`` returns the input saved on failure; ``run`` uses it.


@dataclass
class Target:
    name: str
    make: Callable[[random.Random, Seeds], Any]
    run: Callable[[Any, Seeds], Any]


def _car_input(rng: random.Random, seeds: Seeds) -> bytes:
    if rng.random() < SAMPLE_SHARE:
        return mutate_bytes(rng, seeds.sample_car, seeds.cars)
    return mutate_bytes(rng, rng.choice(seeds.cars), seeds.cars)


def _reframed_car(rng: random.Random, seeds: Seeds) -> bytes:
    """A correctly framed CAR with one block mutated (often given its new CID, as a root)."""
    source = car.read_car(rng.choice(seeds.cars))
    blocks = list(source)
    i = rng.randrange(len(blocks))
    cid, block = blocks[i]
    mutated = mutate_bytes(rng, block, seeds.blocks)
    roots = list(source.roots)
    if rng.random() < 0.7:
        new = cid_for(mutated)
        if roots[0] == cid or rng.random() < 0.5:
            roots = [new]
        cid = new
    blocks[i] = (cid, mutated)
    return encode_car(roots, [(bytes(c), b) for c, b in blocks])


def _hostile_records_car(rng: random.Random, seeds: Seeds) -> bytes:
    """A valid, signed repository whose record blocks include mutated ones."""
    records: dict[str, Any] = {}
    for i in range(rng.randrange(1, 6)):
        block = rng.choice(seeds.records)
        if rng.random() < 0.7:
            block = mutate_bytes(rng, block, seeds.records)
        records[f"app.bsky.feed.post/3k{i:011d}"] = block
    return make_repo_car(records, key=_fixed_key(99))[0]


def _any_car(rng: random.Random, seeds: Seeds) -> bytes:
    pick = rng.random()
    if pick < 0.5:
        return _car_input(rng, seeds)
    if pick < 0.8:
        return _reframed_car(rng, seeds)
    return _hostile_records_car(rng, seeds)


def _run_car(data: bytes, seeds: Seeds) -> Any:
    carfile = car.read_car(data)
    total = sum(len(block) for _, block in carfile)
    return [carfile.get(root) for root in carfile.roots], total, carfile.roots[:1][0] in carfile


def _run_car_reader(data: bytes, seeds: Seeds) -> Any:
    reader = car.CarReader()
    count = 0
    for start in range(0, len(data), 997):
        count += len(reader.feed(data[start:start + 997]))
    reader.close()
    return count


def _run_repository(data: bytes, seeds: Seeds) -> Any:
    snap = atrepo.read_car(data)
    return snap.records.height, snap.problems.height, repr(snap)


def _mst_input(rng: random.Random, seeds: Seeds) -> tuple[bytes, bytes]:
    """(CAR, root): a repository's blocks plus one mutated MST node, walked from that node."""
    source = car.read_car(rng.choice(seeds.cars))
    commit = cbor.decode(source.get(source.roots[0]))  # type: ignore[arg-type]
    nodes = [bytes(commit["data"])]
    frontier = list(nodes)
    while frontier:  # every node: the root and the subtrees of its entries
        node = mst.decode_node(frontier[0], source.get(frontier.pop(0)))  # type: ignore[arg-type]
        links = [node.left] + [right for _, _, right in node.entries]
        new = [bytes(link) for link in links if link is not None]
        nodes += new
        frontier += new
    chosen = rng.choice(nodes)
    mutated = mutate_bytes(rng, source.get(chosen), seeds.blocks)  # type: ignore[arg-type]
    root = cid_for(mutated)
    pairs = [(bytes(cid), block) for cid, block in source] + [(bytes(root), mutated)]
    return encode_car([root], pairs), bytes(root)


def _run_mst(data: tuple[bytes, bytes], seeds: Seeds) -> Any:
    carfile = car.read_car(data[0])
    return sum(1 for _ in mst.walk(carfile, CID.decode(data[1])))


def _string(rng: random.Random, seeds: Seeds) -> str:
    return mutate_str(rng, rng.choice(seeds.strings), seeds.strings)


def _from_pool(pool: str) -> Callable[[random.Random, Seeds], str]:
    """Mostly a mutation of one of ``seeds.<pool>``; sometimes of any seed string."""

    def make(rng: random.Random, seeds: Seeds) -> str:
        if rng.random() < 0.2:
            return _string(rng, seeds)
        text = rng.choice(getattr(seeds, pool))
        return text if rng.random() < 0.1 else mutate_str(rng, text, seeds.strings)

    return make


VALIDATORS = [syntax.is_at_identifier, syntax.is_at_uri, syntax.is_cid_string,
              syntax.is_datetime, syntax.is_did, syntax.is_handle, syntax.is_language,
              syntax.is_nsid, syntax.is_record_key, syntax.is_tid, syntax.is_uri]


def _run_validators(text: Any, seeds: Seeds) -> Any:
    answers = [check(text) for check in VALIDATORS]
    if any(type(answer) is not bool for answer in answers):
        raise AssertionError(f"an is_* validator returned a non-bool: {answers}")
    return answers


def _signature_input(rng: random.Random, seeds: Seeds) -> tuple[Any, Any, Any]:
    key: Any
    message: Any
    signature: Any
    key, message, signature = rng.choice(seeds.signatures)
    which = rng.randrange(4)
    if which == 0:
        key = (_from_pool("keys")(rng, seeds) if rng.random() < 0.9
               else rng.choice([None, 1, b"k"]))
    elif which == 1:
        message = mutate_bytes(rng, message, seeds.blocks)
    elif which == 2:
        signature = (mutate_bytes(rng, signature, [signature]) if rng.random() < 0.9
                     else rng.choice([None, "x" * 64, 64]))
    return key, message, signature


LEGACY_TYPES = ["EcdsaSecp256r1VerificationKey2019", "EcdsaSecp256k1VerificationKey2019",
                "Multikey"]


def _legacy_key_input(rng: random.Random, seeds: Seeds) -> tuple[str, str]:
    kind = rng.choice(LEGACY_TYPES)
    if rng.random() < 0.1:
        kind = mutate_str(rng, kind, LEGACY_TYPES)
    return kind, _from_pool("multikeys")(rng, seeds)


def _python_value(rng: random.Random, seeds: Seeds) -> Any:
    value = cbor.decode_fast(rng.choice(seeds.records))
    return mutate_json(rng, value, seeds.strings) if rng.random() < 0.9 else value


def _block(rng: random.Random, seeds: Seeds) -> bytes:
    return mutate_bytes(rng, rng.choice(seeds.blocks), seeds.blocks)


def _cid_bytes(rng: random.Random, seeds: Seeds) -> bytes:
    cid = bytes(cid_for(rng.choice(seeds.blocks)))
    return mutate_bytes(rng, cid, [cid])


def _json_value(rng: random.Random, seeds: Seeds) -> Any:
    return mutate_json(rng, rng.choice(seeds.json_values), seeds.strings)


TARGETS = [
    Target("cbor.decode", _block, lambda data, _: cbor.decode(data)),
    Target("cbor.decode_fast", _block, lambda data, _: cbor.decode_fast(data)),
    Target("datamodel.record_json", _block, lambda data, _: datamodel.record_json(data)),
    Target("datamodel.from_json", _json_value, lambda obj, _: datamodel.from_json(obj)),
    Target("datamodel.to_json", _python_value, lambda value, _: datamodel.to_json(value)),
    Target("CID.decode(bytes)", _cid_bytes, lambda raw, _: CID.decode(raw)),
    Target("CID.decode(str)", _from_pool("cid_strings"), lambda text, _: str(CID.decode(text))),
    Target("syntax.is_*", _string, _run_validators),
    Target("syntax.parse_at_uri", _string, lambda text, _: syntax.parse_at_uri(text)),
    Target("syntax.split_repo_key", _string, lambda text, _: syntax.split_repo_key(text)),
    Target("crypto.parse_did_key", _from_pool("keys"),
           lambda text, _: crypto.parse_did_key(text)),
    Target("crypto.parse_multikey", _from_pool("multikeys"),
           lambda text, _: crypto.parse_multikey(text)),
    Target("crypto.parse_legacy_key", _legacy_key_input,
           lambda args, _: crypto.parse_legacy_key(*args)),
    Target("crypto.verify_signature", _signature_input,
           lambda args, _: crypto.verify_signature(*args)),
    Target("car.read_car", _any_car, _run_car),
    Target("car.CarReader", _any_car, _run_car_reader),
    Target("atrepo.read_car", _any_car, _run_repository),
    Target("mst.walk", _mst_input, _run_mst),
]


# --- running ---------------------------------------------------------------------------------

class _CrashSlot:
    """The bytes input being run, kept in a shared file mapping that outlives a crash.

    Writing each input to a file would cost more than most decoders take; copying it into a
    mapping costs a memcpy, and the kernel writes the page cache out even when the process
    dies of a segfault. The file holds an 8-byte big-endian length and then the input; it
    is removed when the target finishes without dying.
    """

    SIZE = 4 << 20  # inputs are at most a few hundred KB; longer ones are not kept

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with open(path, "w+b") as f:
            f.truncate(self.SIZE)
            self.map = mmap.mmap(f.fileno(), self.SIZE)

    def hold(self, value: Any) -> None:
        data = value[0] if isinstance(value, tuple) else value  # mst.walk: (CAR, its root)
        if isinstance(data, bytes) and len(data) <= self.SIZE - 8:
            self.map[:8] = len(data).to_bytes(8, "big")
            self.map[8:8 + len(data)] = data

    def close(self) -> None:
        self.map.close()
        self.path.unlink()


class Hang(BaseException):
    """One input spent more than the CPU time limit (a BaseException, so no ``except
    Exception`` eats it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    # sha-256 over the outcome of each input in order: two runs (or two code paths) that
    # agree input by input have the same digest
    digest: Any = field(default_factory=hashlib.sha256)


def fuzz(target: Target, seeds: Seeds, *, inputs: int, seed: int, timeout: float,
         out: Path) -> Result:
    """Run ``inputs`` inputs through ``target``; save and count every non-AtrepoError."""
    rng = random.Random(f"{seed}:{target.name}")
    result = Result(target.name)
    slot = _CrashSlot(Path(_stem(out, target.name, "crashed") + ".bin"))
    clock = time.perf_counter()
    for number in range(inputs):
        value = target.make(rng, seeds)
        slot.hold(value)
        signal.setitimer(signal.ITIMER_PROF, timeout)
        try:
            target.run(value, seeds)
            outcome = "ok"
        except AtrepoError as exc:
            outcome = type(exc).__name__
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the failures this script exists to find, including
            # a hang and a compiled extension's panic (a BaseException under PyO3)
            outcome = f"FAIL {type(exc).__name__}"
            result.failures.append(_save(out, target.name, number, value, exc))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        result.outcomes[outcome] += 1
        result.digest.update(outcome.encode() + b"\n")
    result.inputs = inputs
    result.seconds = time.perf_counter() - clock
    slot.close()
    return result


def _stem(out: Path, target: str, label: object) -> str:
    out.mkdir(parents=True, exist_ok=True)
    name = target.replace("(", "-").replace(")", "").replace("*", "all")
    return str(out / f"{name}-{label}")


def _save(out: Path, target: str, number: int, value: Any, exc: BaseException) -> str:
    """Write the failing input and its traceback; return the path they share, less suffix."""
    stem = _stem(out, target, number)
    if isinstance(value, bytes):
        Path(stem + ".bin").write_bytes(value)
    else:
        Path(stem + ".txt").write_text(_printed(value))
    Path(stem + ".traceback").write_text("".join(traceback.format_exception(exc)))
    return stem


def _printed(value: Any) -> str:
    """``ascii(value)`` in full, even for the huge integers and deep nesting inputs hold."""
    digits, depth = sys.get_int_max_str_digits(), sys.getrecursionlimit()
    sys.set_int_max_str_digits(0)
    sys.setrecursionlimit(max(depth, 50_000))
    try:
        return ascii(value)
    finally:
        sys.set_int_max_str_digits(digits)
        sys.setrecursionlimit(depth)


def _targets(only: str | None) -> Iterator[Target]:
    names = None if only is None else set(only.split(","))
    unknown = (names or set()) - {t.name for t in TARGETS}
    if unknown:
        raise SystemExit(f"unknown targets: {sorted(unknown)}; known: "
                         + ", ".join(t.name for t in TARGETS))
    return (t for t in TARGETS if names is None or t.name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated target names")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds of CPU time one input may take before it counts as "
                             "a hang (CPU time: a busy machine does not make inputs hang)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz",
                        help="where failing inputs are saved")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPROF, _on_alarm)
    faulthandler.enable()  # a crash in native code still prints the Python stack
    seeds = load_seeds()
    path = "compiled core" if _accel.accelerated else "pure Python"
    print(f"path: {path}; seeds: {seeds.counts()} (interop vectors: {INTEROP})", flush=True)
    results = []
    for target in _targets(args.only):
        result = fuzz(target, seeds, inputs=args.inputs, seed=args.seed,
                      timeout=args.timeout, out=args.out)
        outcomes = ", ".join(f"{name} {count}" for name, count in result.outcomes.most_common())
        print(f"{result.target:26} {result.inputs:>8} inputs {result.seconds:8.1f} s  "
              f"{outcomes}", flush=True)
        results.append(result)
    failures = sum(len(r.failures) for r in results)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(r.inputs for r in results)
    print(f"total: {total} inputs in {sum(r.seconds for r in results):.1f} s, "
          f"{failures} failures, peak RSS {peak_mb:.0f} MB")
    for path in (p for r in results for p in r.failures[:20]):
        print(f"  saved {path}")
    if args.json:
        args.json.write_text(json.dumps({
            "seed": args.seed, "accelerated": _accel.accelerated, "seeds": seeds.counts(),
            "peak_rss_mb": round(peak_mb),
            "targets": [{"target": r.target, "inputs": r.inputs, "seconds": round(r.seconds, 2),
                         "outcomes": dict(r.outcomes), "digest": r.digest.hexdigest(),
                         "failures": r.failures}
                        for r in results]}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
