"""Progress bars: on when a person is watching, off in CI, always overridable."""

from __future__ import annotations

import io
from typing import Any

import pytest

from atrepo._progress import progress, wants_progress


def test_explicit_choice_wins(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("ATREPO_PROGRESS", "0")
    assert wants_progress(True) is True
    monkeypatch.delenv("CI")
    monkeypatch.setenv("ATREPO_PROGRESS", "1")
    assert wants_progress(False) is False


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("1", True)])
def test_environment_setting(monkeypatch, value, expected):
    monkeypatch.setenv("ATREPO_PROGRESS", value)
    assert wants_progress(None) is expected


def test_off_in_ci(monkeypatch):
    import atrepo._progress as progress_module

    monkeypatch.delenv("ATREPO_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module, "_in_notebook", lambda: True)  # a person watching
    monkeypatch.delenv("CI", raising=False)
    assert wants_progress(None) is True
    monkeypatch.setenv("CI", "1")
    assert wants_progress(None) is False


def test_silent_bar_accepts_updates(capsys):
    with progress(10, "x", False) as bar:
        assert bar.update(3) is None
        assert not hasattr(bar, "n")          # not a tqdm bar
    assert capsys.readouterr().err == ""      # and nothing was drawn


def test_real_bar_counts(capsys):
    with progress(10, "decoding", True) as bar:
        bar.update(4)
        assert bar.n == 4  # type: ignore[attr-defined]


@pytest.fixture
def bars(monkeypatch):
    """Every tqdm bar made, with what it showed when it closed (its format, not a timing)."""
    import tqdm.auto

    made: list[Any] = []

    class Recording(tqdm.auto.tqdm):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, file=io.StringIO(), **kwargs)
            self.shown = ""
            made.append(self)

        def close(self) -> None:
            if not self.disable and not self.shown:
                self.shown = str(self)
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    return made


def test_counts_are_whole_numbers(bars):
    with progress(306, "decoding", True, unit="rec") as bar:
        bar.update(18)
    assert "18/306" in bars[0].shown
    assert "0.0" not in bars[0].shown and "18.0" not in bars[0].shown


def test_a_bar_inside_a_bar_is_silent(bars):
    with progress(2, "fetching repos", True) as outer:
        with progress(306, "decoding one repo", True) as inner:
            inner.update(306)
            assert not hasattr(inner, "n")
        outer.update(1)
    assert [bar.desc for bar in bars] == ["fetching repos"]
    with progress(3, "the next call", True):  # the outer bar is gone: bars show again
        pass
    assert len(bars) == 2


def test_tasks_and_copied_contexts_inherit_the_outer_bar(bars):
    import asyncio
    import contextvars
    import threading

    def inner_shows() -> bool:
        with progress(5, "inner", True) as bar:
            return hasattr(bar, "n")

    async def in_a_task() -> bool:
        return await asyncio.ensure_future(asyncio.sleep(0, inner_shows()))

    with progress(1, "outer", True):
        seen: list[bool] = []
        thread = threading.Thread(target=contextvars.copy_context().run,
                                  args=(lambda: seen.append(inner_shows()),))
        thread.start()
        thread.join()
        assert seen == [False]
        assert asyncio.run(in_a_task()) is False
    assert [bar.desc for bar in bars] == ["outer"]
