"""Remove outputs, execution counts and run metadata from notebooks, in place.

    .venv/bin/python notebooks/strip_outputs.py              # every notebook in this folder
    .venv/bin/python notebooks/strip_outputs.py a.ipynb ...  # these ones

The notebooks are committed clean; tests/notebooks/test_notebooks.py checks it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(path: Path) -> bool:
    """Strip one notebook; return whether anything changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)  # widget state saved by Jupyter
    if "language_info" in nb.metadata:  # keep the language, drop the interpreter's version
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name",
                                                                                  "python")}
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + "\n" if not after.endswith("\n") else after)
    return after != before


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path(__file__).parent.glob("*.ipynb"))
    for path in paths:
        print(("stripped " if strip(path) else "clean    ") + str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
