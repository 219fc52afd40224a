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
MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(atrepo.__path__, "atrepo.")
                 if not name.endswith(("__main__", "._worker")))


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
