"""The import rules of the layers: pure decoders stay pure and light, imports go downward."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import atrepo

PACKAGE = Path(atrepo.__file__).parent
PURE = ["atrepo.errors", "atrepo.syntax", "atrepo.cid", "atrepo.cbor", "atrepo.datamodel",
        "atrepo.car", "atrepo.mst", "atrepo.crypto", "atrepo.models", "atrepo._records",
        "atrepo._worker", "atrepo._text", "atrepo._names", "atrepo._args", "atrepo._warn",
        "atrepo._varint", "atrepo._accel", "atrepo._corecar",
        "atrepo.car._framing", "atrepo.car._reader",
        "atrepo.car._verify", "atrepo.car._index", "atrepo.mst._node", "atrepo.mst._walk",
        "atrepo.mst._diff", "atrepo.mst._build", "atrepo.mst._ranges"]
HEAVY = {"polars", "httpx", "diskcache", "pydantic", "tqdm"}


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


def _loaded_after_import(module: str) -> set[str]:
    return {name.split(".")[0] for name in _modules_after_import(module)}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_load_no_heavy_dependencies(module):
    assert not (_loaded_after_import(module) & HEAVY)


FLOWS = ["atrepo._flows", "atrepo._flows.effects", "atrepo._flows.policy", "atrepo._flows.xrpc",
         "atrepo._flows.repo", "atrepo._flows.listing", "atrepo._flows.identity",
         "atrepo._flows.pacing", "atrepo._flows.plc", "atrepo._flows.sparse"]


@pytest.mark.parametrize("module", [*FLOWS, "atrepo.identity", "atrepo.repos", "atrepo.retry"])
def test_protocol_layer_loads_no_io_or_frames(module):
    # L1 flows plan requests and read responses; pydantic boundary models are allowed
    assert not _loaded_after_import(module) & {"polars", "httpx", "diskcache", "tqdm"}


FRAMES_LAYER = ["atrepo.snapshot", "atrepo.frames", "atrepo._diff", "atrepo._read"]


@pytest.mark.parametrize("module", FRAMES_LAYER)
def test_frames_layer_loads_no_network_code(module):
    loaded = _loaded_after_import(module)
    assert "polars" in loaded
    assert not loaded & {"httpx", "diskcache"}


DATASET_LAYER = ["atrepo.dataset", "atrepo.dataset._export", "atrepo.dataset._share"]


@pytest.mark.parametrize("module", DATASET_LAYER)
def test_dataset_layer_loads_no_network_code(module):
    # datasets are written and read from frames; fetching is the client's
    assert not _loaded_after_import(module) & {"httpx", "diskcache"}


@pytest.mark.parametrize("module", ["atrepo._io.store", "atrepo._io.cache", "atrepo._io.dns",
                                    "atrepo._io.http", "atrepo._io.limits",
                                    "atrepo._io.decoding", "atrepo._io.deadline",
                                    "atrepo._io.downloads", "atrepo._io.bounded"])
def test_io_never_imports_polars_or_frames(module):
    loaded = _modules_after_import(module)
    assert not {name for name in loaded if name.split(".")[0] == "polars"}
    assert not loaded & {*FRAMES_LAYER, "atrepo.export", "atrepo._snapshot_store"}


def test_import_atrepo_is_lazy():
    assert not _loaded_after_import("atrepo") & HEAVY


PURE_FILES = ["syntax.py", "cid.py", "cbor.py", "datamodel.py", "crypto.py",
              "models.py", "errors.py", "identity.py", "repos.py", "retry.py", "_flows/__init__.py",
              "_flows/effects.py", "_flows/policy.py", "_flows/xrpc.py", "_flows/repo.py",
              "_flows/listing.py", "_flows/identity.py", "_flows/plc.py", "_flows/pacing.py",
              "_flows/sparse.py", "_text.py",
              "_names.py", "_varint.py",
              # the CAR reader and its pure parts; _files, _store and _pack read files
              "car/_framing.py", "car/_reader.py", "car/_verify.py", "car/_index.py",
              "mst/__init__.py", "mst/_node.py", "mst/_source.py", "mst/_ranges.py",
              "mst/_walk.py", "mst/_plan.py", "mst/_build.py", "mst/_diff.py"]


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", PURE_FILES)
def test_pure_sources_do_no_io(name):
    tree = ast.parse((PACKAGE / name).read_text())
    assert not _imported_modules(tree) & {"asyncio", "threading", "socket", "time",
                                          "subprocess", "httpx", "os"}
    calls = {node.func.id for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "open" not in calls
