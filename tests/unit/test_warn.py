"""atrepo._warn: a warning names the user's line however deep inside atrepo it was raised."""

from __future__ import annotations

import asyncio
import inspect
import os
import warnings
from typing import Any

import atrepo
from atrepo._warn import warn

PACKAGE = os.path.dirname(atrepo.__file__)

# Functions that atrepo's tracebacks would show as its own: compiled under a file name inside
# the package (nothing is written there), nested as a flow run by a driver would be.
_INSIDE = '''
def deep(warn):
    return middle(warn)

def middle(warn):
    def flow():
        warn("deep inside")
        yield 1
    return list(flow())

async def adeep(warn):
    await asyncio.sleep(0)
    return deep(warn)
'''


def _inside() -> dict[str, Any]:
    namespace: dict[str, Any] = {"asyncio": asyncio}
    exec(compile(_INSIDE, os.path.join(PACKAGE, "_a_module.py"), "exec"), namespace)
    return namespace


def test_the_warning_names_the_callers_line():
    inside = _inside()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        inside["deep"](warn)
    assert [(w.filename, w.lineno, str(w.message)) for w in caught] == \
        [(__file__, line, "deep inside")]


def test_an_awaited_call_names_the_awaiting_coroutine():
    inside = _inside()
    lines: list[int] = []

    async def user_code() -> None:
        lines.append(inspect.currentframe().f_lineno + 1)  # type: ignore[union-attr]
        await inside["adeep"](warn)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(user_code())
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, lines[0])]


def test_a_warning_issued_outside_atrepo_names_its_own_caller():
    def helper() -> None:
        warn("here")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        helper()
    # the line in helper: it is outside atrepo, so it is where the warning comes from
    assert [(w.filename, w.lineno) for w in caught] == \
        [(__file__, helper.__code__.co_firstlineno + 1)]


def test_a_worker_threads_warning_names_the_remembered_caller():
    # an AsyncClient steps its flows in worker threads: their stacks hold no user frame, so
    # the line remembered on the event loop (run_async calls remember_caller) is named
    import concurrent.futures
    import contextvars

    from atrepo._warn import remember_caller

    context = contextvars.copy_context()
    context.run(remember_caller)
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(context.run, _inside()["deep"], warn).result()
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_without_a_remembered_caller_a_worker_thread_warns_as_before():
    import concurrent.futures

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(_inside()["deep"], warn).result()
    assert len(caught) == 1 and caught[0].filename != __file__
