"""Reading a CAR loads what it needs and no more: polars and the decoders, not the network
stack, the cryptography library, the progress bars or the lexicons of the typed tables.

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


def _modules_after(call: str, *, pure: bool) -> set[str]:
    """Every module in sys.modules after ``call`` ran in a fresh interpreter."""
    code = ("import json, sys, atrepo; " + call + "; "
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
