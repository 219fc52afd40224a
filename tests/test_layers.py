"""The layers of docs/architecture.md, enforced: every module is listed there once, imports go
only to the layers its layer may use, and light layers stay light.

The module table of docs/architecture.md is the single source: a new module fails
:func:`test_every_module_is_on_the_map` until it has a row there.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import atrepo

PACKAGE = Path(atrepo.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

# layer -> the layers its modules may import from (atrepo modules only)
MAY_IMPORT = {
    "decoders": {"decoders"},
    "files": {"decoders", "files"},
    "protocol": {"decoders", "protocol"},
    "local": {"decoders", "files", "local"},
    "io": {"decoders", "files", "protocol", "local", "io"},
    "frames": {"decoders", "files", "local", "frames"},
    "client": {"decoders", "files", "protocol", "local", "io", "frames", "client"},
}
# layer -> third-party packages that importing any of its modules must not load
NEVER_LOADS = {
    "decoders": {"polars", "httpx", "diskcache", "tqdm"},
    "files": {"polars", "httpx", "diskcache", "tqdm"},
    "protocol": {"polars", "httpx", "diskcache", "tqdm"},
    "local": {"httpx"},
    "io": {"polars"},
    "frames": {"httpx", "diskcache"},
}
# the decoders that do not even need pydantic (a worker process or a CAR read loads only these)
PYDANTIC_FREE = ["atrepo.syntax", "atrepo.cid", "atrepo._cidclass", "atrepo.cbor",
                 "atrepo.datamodel", "atrepo.car", "atrepo.mst", "atrepo.crypto",
                 "atrepo._records", "atrepo._worker"]
# standard modules that mean I/O, a clock or threads: pure layers import none of them
IO_MODULES = {"asyncio", "threading", "socket", "time", "subprocess", "httpx", "os", "mmap",
              "tempfile", "shutil", "fcntl"}


def _map() -> dict[str, str]:
    """module -> layer, from the module table of docs/architecture.md."""
    rows = re.findall(r"^\| `(atrepo[\w.]*)` \| (\w+) \|", ARCHITECTURE.read_text(), re.M)
    layers: dict[str, str] = {}
    for module, layer in rows:
        assert module not in layers, f"{module} is on the map twice"
        assert layer in MAY_IMPORT, f"{module}: unknown layer {layer}"
        layers[module] = layer
    return layers


LAYERS = _map()


def _source(module: str) -> Path:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _package_modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "node_modules" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.add(".".join(parts))
    return found


def _atrepo_imports(module: str) -> set[str]:
    """The atrepo modules ``module`` imports, as they would resolve (modules, not names)."""
    path = _source(module)
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + [node.module or ""])
            else:
                target = node.module or ""
            names = [f"{target.rstrip('.')}.{alias.name}" for alias in node.names]
            for name in [target.rstrip("."), *names]:
                if name in LAYERS:
                    found.add(name)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in LAYERS)
    found.discard(module)
    return found


def test_every_module_is_on_the_map():
    modules = _package_modules()
    assert sorted(modules - LAYERS.keys()) == [], "add these to docs/architecture.md"
    assert sorted(LAYERS.keys() - modules) == [], "these are on the map but not in the package"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_go_only_to_allowed_layers(module):
    layer = LAYERS[module]
    wrong = {name: LAYERS[name] for name in _atrepo_imports(module)
             if LAYERS[name] not in MAY_IMPORT[layer] and name != "atrepo"}
    assert wrong == {}, f"{module} ({layer}) imports from layers it may not use"


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


def _loaded_after_import(module: str) -> set[str]:
    return {name.split(".")[0] for name in _modules_after_import(module)}


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items() if layer in NEVER_LOADS))
def test_light_layers_stay_light(module):
    assert not _loaded_after_import(module) & NEVER_LOADS[LAYERS[module]]


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items() if layer == "io"))
def test_io_never_loads_frames(module):
    frames = {m for m, layer in LAYERS.items() if layer in {"frames", "client"}} - {"atrepo"}
    assert not _modules_after_import(module) & frames


@pytest.mark.parametrize("module", PYDANTIC_FREE)
def test_core_decoders_load_no_pydantic(module):
    assert "pydantic" not in _loaded_after_import(module)


def test_import_atrepo_is_lazy():
    assert not _loaded_after_import("atrepo") & {"polars", "httpx", "diskcache", "pydantic",
                                                 "tqdm"}


def _imported_roots(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items()
                                          if layer in {"decoders", "protocol"}))
def test_pure_sources_do_no_io(module):
    tree = ast.parse(_source(module).read_text())
    assert not _imported_roots(tree) & IO_MODULES
    calls = {node.func.id for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "open" not in calls
