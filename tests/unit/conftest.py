"""Fixtures of the unit tests: the reference repository framed by hand (see ``_hostile.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from _hostile import Layout, frame_layout, read_all


@pytest.fixture(scope="session")
def ref(ref_small: Any) -> Layout:
    """``ref_small``'s CAR framed by hand, each block's offsets and kind known."""
    data = ref_small.car.read_bytes()
    layout = frame_layout(data, {cid for _, _, cid in ref_small.records})
    assert str(layout.commit) == ref_small.truth["commit_cid"]
    return layout


@pytest.fixture(scope="session")
def ref_records(ref_small: Any) -> Any:
    """``ref_small``'s records frame, read whole."""
    return read_all(ref_small.car).records
