"""The package type-checks under ``mypy --strict`` and passes ruff (settings in pyproject)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_mypy_strict():
    done = _run("mypy", "atrepo")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff():
    done = _run("ruff", "check", "atrepo")
    assert done.returncode == 0, done.stdout + done.stderr
