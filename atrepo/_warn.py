"""Warnings that point at the user's line, not at atrepo's insides.

A warning is raised deep inside a flow, several frames below the public call (the flow, the
driver that runs it, the client method), and how deep depends on the call. A fixed
``stacklevel`` therefore points into atrepo (``_io/http.py:480``) for some calls. :func:`warn`
attributes the warning to the first frame outside the package instead, which is the user's
code for every call made from it (for an ``AsyncClient`` call, the coroutine that awaited
it), so ``-W error`` and warning filters by module work on the user's module.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType
from typing import Final

__all__ = ["user_stacklevel", "warn"]

_PACKAGE: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a warning from the first caller outside atrepo."""
    warnings.warn(message, category, stacklevel=user_stacklevel(skip=1))


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
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level
