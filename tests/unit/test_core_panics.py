"""No panic of the compiled core crosses into Python: it arrives as a CarError.

A panic is a bug of the core; PyO3 alone would raise it as ``PanicException``, a
``BaseException`` that ``except Exception`` lets through. The core's guard around every
entry point (``guarded`` in rust/src/lib.rs) catches it, on the calling thread, on a worker
thread of a pass and with the GIL released, and raises it as the :class:`~atrepo.CarError`
that :mod:`atrepo._accel` makes of a failure of kind ``internal``, also for a call that does
not come through ``_accel.call`` (a sequence's item, polars taking columns). The panics
here come from ``_core._panic_for_tests``, the core's one test-only entry point; that every
other entry point is guarded is checked over the Rust sources.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atrepo import CarError, _accel
from atrepo.cid import cid_for

needs_core = pytest.mark.skipif(_accel.core is None, reason="the compiled core is not built")

ROOT = Path(__file__).resolve().parents[2]
RUST = ROOT / "rust" / "src"
HINT = ("a bug in atrepo: set ATREPO_PURE_PYTHON=1 to use the pure Python path instead, "
        "and report this message with the input that caused it")


def _panicked(**how: object) -> CarError:
    """The error of ``_panic_for_tests("boom", **how)`` called as atrepo calls the core."""
    assert _accel.core is not None
    with pytest.raises(CarError) as caught:
        _accel.call(_accel.core._panic_for_tests, "boom", **how)
    return caught.value


def _assert_internal(error: CarError, panic: str) -> None:
    assert error.message == "internal error in the compiled core"
    assert error.fields == {"offset": None, "cid": None, "call": "_panic_for_tests",
                            "panic": panic}
    assert error.hint == HINT
    assert str(error) == (f"internal error in the compiled core; call=_panic_for_tests; "
                          f"panic={panic}; {HINT}")


@needs_core
def test_a_panic_on_the_calling_thread_is_a_car_error() -> None:
    _assert_internal(_panicked(), "boom (on the calling thread)")


@needs_core
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="one CPU: the pass starts no worker thread")
def test_a_panic_on_a_worker_thread_of_the_pass_is_a_car_error() -> None:
    _assert_internal(_panicked(in_thread=True), "boom (on a worker thread)")


@needs_core
def test_a_panic_is_a_car_error_also_when_called_without_accel_call() -> None:
    assert _accel.core is not None
    with pytest.raises(CarError) as caught:
        _accel.core._panic_for_tests("boom")
    _assert_internal(caught.value, "boom (on the calling thread)")


def test_an_internal_failure_names_the_cid_the_call_was_given() -> None:
    root = cid_for(b"a node")
    failure = ("internal", "internal error in the compiled core",
               [("cid", "cid", bytes(root)), ("call", "text", "Car.walk"),
                ("panic", "text", "index out of bounds")], HINT)
    error = _accel.error(failure)
    assert type(error) is CarError
    assert error.cid == str(root)
    assert str(error) == (f"internal error in the compiled core; cid={root}; call=Car.walk; "
                          f"panic=index out of bounds; {HINT}")


# in a child process one thread calls the core, which reads a FIFO to its end before it
# panics; the main thread opens and closes the FIFO's write end, ending that read, which it
# can do only if the core let the GIL go: held, the two threads would wait on each other for
# ever, and the child's timeout turns that into a failure
_WITHOUT_THE_GIL = """
import sys, threading
from atrepo import CarError, _accel

caught = []

def call():
    try:
        _accel.call(_accel.core._panic_for_tests, "boom", wait=sys.argv[1])
    except CarError as error:
        caught.append(error.fields["panic"])

thread = threading.Thread(target=call)
thread.start()
with open(sys.argv[1], "wb"):
    pass
thread.join()
print(caught)
"""


@needs_core
def test_a_panic_with_the_gil_released_is_a_car_error(tmp_path: Path) -> None:
    fifo = tmp_path / "wait"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-c", _WITHOUT_THE_GIL, str(fifo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['boom (on the calling thread)']"


# --- every entry point is guarded ------------------------------------------------------------

# comments, strings and character literals (lifetimes such as 'py have no closing quote)
_LITERAL = re.compile(r"""//[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])'""")
_ATTRS = r"((?:#\[[^\n]*\]\s*)*)"
_FN = re.compile(_ATTRS + r"(?:pub(?:\(crate\))?\s+)?fn\s+(\w+)")
_PYCLASS = re.compile(r'#\[pyclass\([^)]*\bname = "(\w+)"[^)]*\)\]\s*'
                      r"(?:pub(?:\(crate\))?\s+)?struct\s+(\w+)")
_PYFUNCTION = re.compile(r'#\[pyfunction(?:\(name = "(\w*)\s*"\))?\]')
_GUARD = re.compile(r'\{\s*guarded\((?:py|slf\.py\(\)), "(\w+(?:\.\w+)?)", ')


def _code(source: str) -> str:
    """``source`` with its literals and comments blanked (same length): braces and parentheses
    left are the code's own."""
    return _LITERAL.sub(lambda m: m.group()[0] + " " * (len(m.group()) - 2) + m.group()[-1]
                        if m.group()[0] in "\"'" else " " * len(m.group()), source)


def _closing(code: str, opening: int) -> int:
    """The index of the bracket closing the one at ``opening``."""
    pair = {"{": "}", "(": ")"}[code[opening]]
    depth = 0
    for i in range(opening, len(code)):
        depth += (code[i] == code[opening]) - (code[i] == pair)
        if depth == 0:
            return i
    raise AssertionError(f"no bracket closes the one at {opening}")


def _entry_points() -> list[tuple[str, str, str, str, str]]:
    """(file, Python name, attributes, code body, source body) of every pyo3 function and
    method in rust/src."""
    found = []
    for path in sorted(RUST.glob("*.rs")):
        source = path.read_text()
        code = _code(source)
        classes = {rust: python for python, rust in _PYCLASS.findall(source)}

        def add(python: str, attrs: str, after: int) -> int:
            opening = code.index("{", after)
            closing = _closing(code, opening) + 1
            found.append((path.name, python, attrs, code[opening:closing],
                          source[opening:closing]))
            return closing

        for block in re.finditer(r"#\[pymethods\]\s*impl (\w+) \{", code):
            owner, end = classes[block.group(1)], _closing(code, block.end() - 1)
            at = block.end()
            while (fn := _FN.search(code, at, end)) is not None:
                attrs, name = source[fn.start(1):fn.end(1)], fn.group(2)
                at = add(owner if "#[new]" in attrs else f"{owner}.{name}", attrs, fn.end())
        for mark in _PYFUNCTION.finditer(code):  # the name: the source's, at the same place
            named = _PYFUNCTION.match(source, mark.start())
            fn = _FN.match(code, mark.start())
            assert named is not None and fn is not None, f"{path.name}: {mark.group()}"
            add(named.group(1) or fn.group(2), source[fn.start(1):fn.end(1)], fn.end())
    return found


def _guarded_as(code_body: str, source_body: str) -> str | None:
    """The name given to ``guarded`` when the body is one call of it and nothing else."""
    guard = _GUARD.match(source_body)
    if guard is None:
        return None
    after = code_body[_closing(code_body, code_body.index("(")) + 1:]
    return guard.group(1) if after.strip() == "}" else None


def test_every_entry_point_runs_under_the_guard() -> None:
    entries = _entry_points()
    # the scan sees every kind of entry point there is (a scan that found none proves nothing)
    assert {"Car", "Car.walk", "Car.records", "Car.__len__", "Car.size", "Keys.__getitem__",
            "Tree.views", "record_json", "diff", "Diff.rows", "TableChecker", "check_table",
            "check_texts_table", "ArrowColumns.__arrow_c_array__", "_panic_for_tests"
            } <= {python for _, python, _, _, _ in entries}
    unguarded = [
        f"{file}: {python}" for file, python, attrs, code_body, source_body in entries
        # a length or a getter returns what was stored when the object was built: no work
        if not (python.endswith(".__len__") or "#[getter]" in attrs)
        and _guarded_as(code_body, source_body) != python]
    assert unguarded == []
