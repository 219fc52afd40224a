"""Where the atproto interop test vectors are, for every test that reads them.

The vectors (bluesky-social/atproto-interop-tests) are not copied into the repository:
``$ATREPO_INTEROP_DIR`` names their folder, by default ``shared/interop`` beside the
checkout. Test modules import this module by name (``from _interop import INTEROP_DIR``):
pytest puts ``tests/`` on ``sys.path`` for its ``conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["INTEROP_DIR"]

INTEROP_DIR = Path(os.environ.get("ATREPO_INTEROP_DIR")
                   or Path(__file__).resolve().parents[2] / "shared" / "interop")
