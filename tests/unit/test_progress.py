"""Progress bars: on when a person is watching, off in CI, always overridable."""

from __future__ import annotations

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
