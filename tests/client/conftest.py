"""Fixtures for tests of network behaviour against a real local PLC + PDS (tests/sandbox.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
REFERENCE = TESTS / "reference"


def _load_sandbox_module() -> Any:
    """Import tests/sandbox.py by path (tests/ is no package; works in any --import-mode)."""
    name = "atrepo_tests_sandbox"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "sandbox.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """A running sandbox.mjs (PLC + PDS with alice/bob/carol/dave), shared by the session."""
    if not (REFERENCE / "node_modules" / "@atproto" / "dev-env").exists():
        pytest.fail("the reference implementation is not installed "
                    "(tests/reference/node_modules is missing): run `make test`")
    mod = _load_sandbox_module()
    try:
        sb = mod.Sandbox.start(REFERENCE)
    except mod.SandboxError as exc:
        pytest.fail(str(exc))
    try:
        yield sb
    finally:
        sb.stop()
