"""Every docstring example in the package runs and prints what it claims.

(Run here rather than with --doctest-modules, which would import each conftest.py as a
module and trip over them.) Examples read the shipped examples/data/sample.car, so the
working directory is the repository root.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import atrepo

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["atrepo"] + sorted(
    name for _, name, _ in pkgutil.walk_packages(atrepo.__path__, "atrepo.")
    if not name.endswith(("__main__", "._worker")))


def _examples(name: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(importlib.import_module(name)) if test.examples]


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_the_public_modules_have_examples():
    assert {"atrepo", "atrepo.cbor", "atrepo.car", "atrepo.mst", "atrepo._read",
            "atrepo._diff"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples_run(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
