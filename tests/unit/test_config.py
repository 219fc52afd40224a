"""atrepo._config: every client default in one place, checked once, and the cache directory."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

from atrepo import AtrepoError, UsageError
from atrepo._config import (
    DEFAULTS,
    ENV_CACHE_DIR,
    ENV_HANDLE_RESOLVER,
    ENV_PLC_URL,
    ENV_PROGRESS,
    ClientConfig,
    client_config,
    default_cache_dir,
    env_progress,
)
from atrepo.client import AsyncClient, Client


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


def test_a_setting_of_the_wrong_type_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match="invalid client settings") as info:
        ClientConfig(timeout="30")  # type: ignore[arg-type]
    assert info.value.argument == "timeout"
    with pytest.raises(UsageError) as info:
        ClientConfig(max_concurrency=2.5)  # type: ignore[arg-type]
    assert info.value.argument == "max_concurrency"


@pytest.fixture
def clean_env(monkeypatch):
    for name in (ENV_PLC_URL, ENV_HANDLE_RESOLVER, ENV_CACHE_DIR, ENV_PROGRESS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_environment_fills_what_the_client_was_not_given(clean_env, tmp_path):
    assert client_config().plc_url == "https://plc.directory"
    assert client_config().handle_resolver is None
    clean_env.setenv(ENV_PLC_URL, "http://127.0.0.1:2582/")
    clean_env.setenv(ENV_HANDLE_RESOLVER, "http://127.0.0.1:2583")
    clean_env.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    config = client_config()
    assert (config.plc_url, config.handle_resolver) == ("http://127.0.0.1:2582",
                                                        "http://127.0.0.1:2583")
    assert config.cache_path == tmp_path / "env"
    given = client_config(plc_url="https://plc.example.com", handle_resolver="",
                          cache_dir=tmp_path / "given")
    assert (given.plc_url, given.handle_resolver) == ("https://plc.example.com", None)
    assert given.cache_path == tmp_path / "given"


def test_a_bad_url_names_the_option_or_the_variable_it_came_from(clean_env):
    with pytest.raises(UsageError, match="host must be a URL") as info:
        client_config(plc_url="localhost:2582")
    assert info.value.argument == "plc_url"
    clean_env.setenv(ENV_HANDLE_RESOLVER, "localhost:2583")
    with pytest.raises(UsageError) as info:
        client_config()
    assert info.value.argument == ENV_HANDLE_RESOLVER and "http://localhost:2583" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("0", False), (" Off ", False), ("no", False),
                                                 ("1", True), ("yes", True), ("", None)])
def test_the_progress_variable(clean_env, value, expected):
    clean_env.setenv(ENV_PROGRESS, value)
    assert env_progress() is expected


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_the_signature_shows_every_option_and_its_default(cls):
    parameters = inspect.signature(cls).parameters
    options = {f.name for f in fields(ClientConfig)}
    assert set(parameters) == options | {"http", "dns"}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    from_environment = {"plc_url", "handle_resolver", "cache_dir", "progress"}
    for name in options - from_environment:
        assert parameters[name].default == getattr(DEFAULTS, name), name
    assert all(parameters[name].default is None for name in from_environment)


def test_a_driver_of_the_other_kind_is_refused(tmp_path):
    import httpx

    with pytest.raises(UsageError, match="Client takes an httpx.Client") as info:
        Client(http=httpx.AsyncClient(), cache_dir=tmp_path)  # type: ignore[arg-type]
    assert info.value.argument == "http"

    class SyncDns:
        def txt(self, name: str) -> list[str]:
            return []

    with pytest.raises(UsageError, match="async") as info:
        AsyncClient(dns=SyncDns(), cache_dir=tmp_path)  # type: ignore[arg-type]
    assert info.value.argument == "dns"


@pytest.mark.parametrize(("option", "argument"), [({"verify": "no"}, "verify"),
                                                  ({"progress": 1}, "progress"),
                                                  ({"retry": 3}, "retry")])
def test_flags_and_policies_of_the_wrong_type_are_refused(option, argument):
    with pytest.raises(UsageError) as info:
        ClientConfig(**option)
    assert info.value.argument == argument


def test_a_cache_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file") as info:
        client_config(cache_dir=tmp_path / "file")
    assert info.value.argument == "cache_dir"
    with pytest.raises(UsageError, match="must be a path"):
        client_config(cache_dir=5)  # type: ignore[arg-type]
