"""Reading a CAR loads what it needs and no more: polars and the decoders, not the network
stack, the cryptography library, the progress bars or the lexicons of the typed tables; and
through the compiled core not multiformats (CIDs stay binary until one is asked for) nor the
pure path's MST walk, record decoding and worker processes.

Each case runs in a fresh interpreter and lists the top-level packages in ``sys.modules``
after the call, so an import added at the top of a module on the read path fails here. The
counter-cases show that the same packages do load once their feature is used, so the list
is not empty by accident.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "examples/data/sample.car"
CORE = pytest.mark.skipif(importlib.util.find_spec("atrepo._core") is None,
                          reason="the compiled core is not built")
PATHS = [pytest.param(False, id="core", marks=CORE), pytest.param(True, id="python")]
SIGNING_KEY = json.loads((ROOT / "examples" / "data" / "sample.json").read_text())["signing_key"]

# loaded on first use only: signatures, progress bars, the clients and their I/O, datasets
NOT_FOR_A_READ = {"cryptography", "tqdm", "pydantic", "httpx", "diskcache", "dns", "deltalake",
                  "asyncio"}
# atrepo's own network and dataset layers, and the typed tables with their lexicons
NOT_FOR_A_READ_ATREPO = {"atrepo.client", "atrepo._io", "atrepo._flows", "atrepo.dataset",
                         "atrepo.identity", "atrepo.tables", "atrepo.lexicon"}
# what the compiled core does itself, or a read through it never asks for: CID objects
# (multiformats), the MST codec and walk, record decoding, worker processes, progress bars,
# signature checks, one record's JSON (orjson)
NOT_FOR_A_CORE_READ = {"multiformats", "atrepo._cidclass", "atrepo.mst._node",
                       "atrepo.mst._walk", "atrepo.mst._plan", "atrepo.mst._build",
                       "atrepo.mst._diff", "atrepo.mst._source", "atrepo._records",
                       "atrepo.datamodel", "atrepo._parallel", "atrepo._progress",
                       "atrepo.crypto", "orjson", "libipld"}


def _modules_after(call: str, *, pure: bool) -> set[str]:
    """Every module in sys.modules after ``call`` (statements) ran in a fresh interpreter."""
    code = ("import json, sys, atrepo\n" + call + "\n"
            "print(json.dumps([atrepo.accelerated, sorted(sys.modules)]))")
    env = {k: v for k, v in os.environ.items() if k not in ("ATREPO_PURE_PYTHON", "CI")}
    env["ATREPO_PURE_PYTHON"] = "1" if pure else "0"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    accelerated, modules = json.loads(out)
    if not pure and not accelerated:
        pytest.fail("the compiled core did not load")
    return set(modules)


def _loaded_after(call: str, *, pure: bool) -> set[str]:
    """Top-level packages and atrepo packages in sys.modules after ``call`` ran."""
    modules = _modules_after(call, pure=pure)
    return {name.split(".")[0] for name in modules} | {
        ".".join(name.split(".")[:2]) for name in modules if name.startswith("atrepo.")}


@pytest.mark.parametrize("pure", PATHS)
def test_read_car_records_loads_only_what_it_needs(pure: bool) -> None:
    loaded = _loaded_after(f"atrepo.read_car({SAMPLE!r}).records", pure=pure)
    assert "polars" in loaded
    assert loaded & NOT_FOR_A_READ == set()
    assert loaded & NOT_FOR_A_READ_ATREPO == set()


@pytest.mark.parametrize("pure", PATHS)
def test_pruned_read_loads_only_what_it_needs(pure: bool) -> None:
    call = (f"atrepo.read_car({SAMPLE!r}, collections=['app.bsky.actor.profile'], "
            "mem_limit_mb=64).records")
    loaded = _loaded_after(call, pure=pure)
    assert loaded & (NOT_FOR_A_READ | NOT_FOR_A_READ_ATREPO) == set()


@pytest.mark.parametrize("pure", PATHS)
@pytest.mark.parametrize("collections", [None, ["app.bsky.actor.profile"]], ids=["all", "pruned"])
def test_a_read_leaves_cbor2s_deferred_encoders_unloaded(pure: bool,
                                                         collections: list[str] | None) -> None:
    # re-encoding the header and commit (the canonical-form check) names CIDs' exact types,
    # so cbor2 never resolves its deferred encoders for MIME messages and fractions
    call = f"atrepo.read_car({SAMPLE!r}, collections={collections!r}).records"
    modules = _modules_after(call, pure=pure)
    assert {"email.mime", "email.mime.text", "fractions"} & modules == set()


def test_an_unnamed_type_loads_cbor2s_deferred_encoders() -> None:
    # the counter-case: encoding a type cbor2 finds in no table pulls those modules in, so
    # the check above can fail
    modules = _modules_after("import cbor2; cbor2.dumps(object(), default=lambda e, v: None)",
                             pure=True)
    assert "email.mime.text" in modules


@CORE
def test_a_checked_signature_loads_cryptography() -> None:
    call = f"assert atrepo.read_car({SAMPLE!r}, signing_key={SIGNING_KEY!r}).verified"
    loaded = _loaded_after(call, pure=False)
    assert "cryptography" in loaded
    assert "tqdm" not in loaded


def test_a_progress_bar_loads_tqdm() -> None:
    # the pure path decodes in batches behind a bar (the core decodes in one call, unshown)
    loaded = _loaded_after(f"atrepo.read_car({SAMPLE!r}, progress=True).records", pure=True)
    assert "tqdm" in loaded
    assert "cryptography" not in loaded


@CORE
def test_a_table_loads_the_lexicons() -> None:
    loaded = _loaded_after(f"atrepo.read_car({SAMPLE!r}).table('app.bsky.feed.post')",
                           pure=False)
    assert {"atrepo.tables", "atrepo.lexicon"} <= loaded


@CORE
@pytest.mark.parametrize("collections", [None, ["app.bsky.actor.profile"]], ids=["all", "pruned"])
def test_a_core_read_builds_no_cid_object_and_skips_the_pure_path(
        collections: list[str] | None) -> None:
    call = (f"snap = atrepo.read_car({SAMPLE!r}, collections={collections!r}, mem_limit_mb=64)\n"
            "assert snap.records.height > 0 and snap.data_cid.startswith('bafy')\n"
            "assert snap.commit_cid.startswith('bafy') and 'decoder=compiled' in repr(snap)")
    loaded = _modules_after(call, pure=False)
    assert loaded & NOT_FOR_A_CORE_READ == set()


@CORE
def test_a_core_error_names_the_cid_without_multiformats() -> None:
    # a CAR whose one root (the commit) is not in it: the error names the root as text
    call = ("from atrepo.cbor import Link, encode\n"
            "from atrepo.cid import cid_str\n"
            "root = bytes.fromhex('01711220') + bytes(range(32))\n"
            "header = encode({'roots': [Link(root)], 'version': 1})\n"
            "try:\n"
            "    atrepo.read_car(bytes([len(header)]) + header)\n"
            "except atrepo.CarError as exc:\n"
            "    assert 'cid=' + cid_str(root) in str(exc), exc\n"
            "else:\n"
            "    raise AssertionError('no CarError')")
    assert "multiformats" not in _modules_after(call, pure=False)


@CORE
def test_asking_for_a_cid_object_loads_multiformats() -> None:
    # the counter-case: the header's roots as CID objects are made on first access
    call = (f"roots = atrepo.read_car({SAMPLE!r}).blocks.roots\n"
            "assert isinstance(roots[0], atrepo.CID)")
    assert {"multiformats", "atrepo._cidclass"} <= _modules_after(call, pure=False)


def test_the_pure_path_loads_its_walk_and_decoding() -> None:
    # the counter-case of the core read: the same read in pure Python needs these
    loaded = _modules_after(f"atrepo.read_car({SAMPLE!r}).records", pure=True)
    assert {"atrepo.mst._walk", "atrepo._records", "atrepo.datamodel"} <= loaded
