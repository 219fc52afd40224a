"""Warnings that point at the user's line, not at atrepo's insides.

A warning is raised deep inside a flow, several frames below the public call (the flow, the
driver that runs it, the client method), and how deep depends on the call. A fixed
``stacklevel`` therefore points into atrepo (``_io/http.py:480``) for some calls. :func:`warn`
attributes the warning to the first frame outside the package instead, which is the user's
code for every call made from it (for an ``AsyncClient`` call, the coroutine that awaited
it), so ``-W error`` and warning filters by module work on the user's module.

An ``AsyncClient`` steps its flows in worker threads, whose stacks hold no user frame:
:func:`remember_caller`, called on the event loop when the flow starts, records the user's
line in a context variable the worker threads inherit, and :func:`warn` names that line.
"""

from __future__ import annotations

import contextvars
import os
import sys
import warnings
from types import FrameType
from typing import Any, Final, NamedTuple

__all__ = ["remember_caller", "user_stacklevel", "warn"]

_PACKAGE: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _Site(NamedTuple):
    filename: str
    lineno: int
    module: str
    globals: dict[str, Any]


_CALLER: contextvars.ContextVar[_Site | None] = contextvars.ContextVar("atrepo_caller",
                                                                       default=None)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a warning from the first caller outside atrepo."""
    site = _CALLER.get()
    if site is None or _user_frame(sys._getframe(1)) is not None:
        warnings.warn(message, category, stacklevel=user_stacklevel(skip=1))
        return
    registry = site.globals.setdefault("__warningregistry__", {})
    warnings.warn_explicit(message, category, site.filename, site.lineno, module=site.module,
                           registry=registry, module_globals=site.globals)


def remember_caller() -> None:
    """Record the first frame outside atrepo as where this context's warnings point."""
    frame = _user_frame(sys._getframe(1))
    if frame is not None:
        _CALLER.set(_Site(frame.f_code.co_filename, frame.f_lineno,
                          frame.f_globals.get("__name__", "<unknown>"), frame.f_globals))


def _user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame, from ``frame`` outwards, that is not atrepo's code, or None."""
    while frame is not None and _inside(frame):
        frame = frame.f_back
    return frame if frame is not None and not _is_thread_bootstrap(frame) else None


def _inside(frame: FrameType) -> bool:
    return os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE)


def _is_thread_bootstrap(frame: FrameType) -> bool:
    # a worker thread's stack ends in the standard library's thread machinery, not in user
    # code: only such a stack falls back to the remembered caller
    name = frame.f_globals.get("__name__", "")
    return name in {"concurrent.futures.thread", "threading"}


def user_stacklevel(*, skip: int = 0) -> int:
    """The ``stacklevel`` that names the first frame outside atrepo.

    Args:
        skip: frames between the caller and the ``warnings.warn`` call that gets the level
            (1 when called from a helper such as :func:`warn`).

    Returns:
        The level counted from the frame that calls ``warnings.warn``: 1 is that frame, 2 its
        caller, and so on.
    """
    level = 1 + skip
    frame: FrameType | None = sys._getframe(1 + skip)  # level 1 + skip
    while frame is not None and _inside(frame):
        frame = frame.f_back
        level += 1
    return level
