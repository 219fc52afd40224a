"""The notebooks run from top to bottom, and are committed without outputs.

Each notebook is executed by nbclient in a ``python3`` kernel running this interpreter (the
venv's), against one sandbox shared through ``ATREPO_SANDBOX_PLC_URL``/``_PDS_URL`` (a notebook
that writes to its sandbox starts its own). Any cell that raises fails the test with the
cell's traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

from atrepo.sandbox import Sandbox

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; a sandbox start or a bulk export takes ~10 s
STRIP = "run `.venv/bin/python notebooks/strip_outputs.py` before committing"


def _execute(nb: nbformat.NotebookNode, *, allow_errors: bool = False) -> None:
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                            startup_timeout=120, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()


def test_there_are_notebooks() -> None:
    names = {p.name for p in PATHS}
    assert {"quickstart.ipynb", "snapshots-and-diffs.ipynb", "bulk-export.ipynb",
            "offline-car.ipynb"} <= names


def test_kernel_runs_this_interpreter() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    _execute(nb)
    (out,) = nb.cells[0].outputs
    assert Path(out["text"].strip()).resolve() == Path(sys.executable).resolve()


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, bulk_sandbox: Sandbox,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel inherits this environment
    monkeypatch.setenv("ATREPO_SANDBOX_PLC_URL", bulk_sandbox.plc_url)
    monkeypatch.setenv("ATREPO_SANDBOX_PDS_URL", bulk_sandbox.pds_url)
    monkeypatch.setenv("ATREPO_PROGRESS", "0")  # no widgets in the recorded outputs
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    try:
        _execute(nb, allow_errors=True)  # every cell runs; their errors are checked below
    except CellTimeoutError as exc:
        pytest.fail(f"{path.name}: a cell timed out\n{exc}", pytrace=False)
    errors = [f"{out.ename}: {out.evalue}" for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{path.name}: cells failed: {errors}"
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells
                 if cell.cell_type == "code" for out in cell.outputs)
    assert images >= 1, f"{path.name} drew no chart"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name} cell {i} has outputs: {STRIP}"
        assert cell.execution_count is None, f"{path.name} cell {i} has a count: {STRIP}"
        assert "execution" not in cell.metadata, f"{path.name} cell {i} has timings: {STRIP}"
