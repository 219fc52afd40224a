"""atrepo._config: every client default in one place, checked once, and the cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrepo import AtrepoError
from atrepo._config import ClientConfig, default_cache_dir


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ATREPO_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("ATREPO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "atrepo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "atrepo"


def test_a_given_cache_dir_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("ATREPO_CACHE_DIR", str(tmp_path / "env"))
    assert ClientConfig(cache_dir=tmp_path / "given").cache_path == tmp_path / "given"
    assert ClientConfig().cache_path == tmp_path / "env"


@pytest.mark.parametrize("option", [{"timeout": 0}, {"body_timeout": -1},
                                    {"max_concurrency": 0}, {"max_per_host": 0},
                                    {"mem_limit_mb": -1}, {"max_cache_bytes": -1}])
def test_invalid_settings_are_refused_with_the_rule(option):
    with pytest.raises(AtrepoError, match="invalid client settings") as info:
        ClientConfig(**option)
    assert "max_concurrency >= 1" in str(info.value)
