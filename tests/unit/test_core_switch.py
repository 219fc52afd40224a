"""The one switch: compiled core or pure Python, decided once, shown and overridable.

Each case runs in a fresh interpreter, since the choice is made when atrepo is imported.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = ("import atrepo; s = atrepo.read_car('examples/data/sample.car'); "
        "print(atrepo.accelerated, type(s.blocks).__name__, repr(s).split()[-1], s.records.height)")


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ATREPO_PURE_PYTHON"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environ, **env},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_forced_pure_python() -> None:
    assert _run(SHOW, ATREPO_PURE_PYTHON="1") == "False CarFile decoder=python> 400"


def test_without_the_extension_atrepo_runs_pure_python() -> None:
    # what an install without a Rust toolchain gives: no atrepo._core to import
    code = "import sys; sys.modules['atrepo._core'] = None; " + SHOW
    assert _run(code) == "False CarFile decoder=python> 400"


@pytest.mark.skipif(importlib.util.find_spec("atrepo._core") is None,
                    reason="the compiled core is not built")
def test_the_core_when_built() -> None:
    assert _run(SHOW, ATREPO_PURE_PYTHON="0") == "True CoreCarFile decoder=compiled> 400"
