"""The module shortcuts pointed at the sandbox: by environment variables, or by configure().

The environment's default client uses the system's httpx and DNS defaults, so these tests
rely on the sandbox's handles never needing either (``.test`` handles and a loopback
``handle_resolver`` are asked of the resolver only) and clear proxy variables so that
loopback requests stay direct.
"""

from __future__ import annotations

import httpx
import pytest
from _loopback import LoopbackTransport, NoDns

import atrepo
import atrepo._shortcuts as shortcuts

PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def fresh_default(monkeypatch):
    """No default client yet; the one the test makes is closed at the end."""
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(shortcuts, "_default", None)
    yield monkeypatch
    if shortcuts._default is not None:
        shortcuts._default.close()


def test_environment_variables_point_the_shortcuts_at_the_sandbox(sandbox, tmp_path,
                                                                   fresh_default):
    fresh_default.setenv("ATREPO_PLC_URL", sandbox.plc_url)
    fresh_default.setenv("ATREPO_HANDLE_RESOLVER", sandbox.pds_url)
    fresh_default.setenv("ATREPO_CACHE_DIR", str(tmp_path / "cache"))
    fresh_default.setenv("ATREPO_PROGRESS", "0")
    alice = sandbox.account("alice.test")
    assert atrepo.resolve("alice.test").did == alice["did"]
    assert len(atrepo.get_repo("alice.test")) == alice["records"]
    assert alice["did"] in atrepo.list_repos(sandbox.pds_url)["did"].to_list()
    config = shortcuts.default_client().config
    assert (config.plc_url, config.handle_resolver) == (sandbox.plc_url, sandbox.pds_url)
    assert config.progress is None and config.cache_path == tmp_path / "cache"
    assert any((tmp_path / "cache").iterdir())  # the snapshot went where the variable said


def test_configure_replaces_and_closes_the_default_client(sandbox, tmp_path, fresh_default):
    first = atrepo.configure(plc_url=sandbox.plc_url, handle_resolver=sandbox.pds_url,
                             cache_dir=tmp_path / "one", progress=False,
                             http=httpx.Client(transport=LoopbackTransport(), trust_env=False),
                             dns=NoDns())
    assert shortcuts.default_client() is first
    alice = sandbox.account("alice.test")
    assert atrepo.resolve("alice.test").did == alice["did"]
    second = atrepo.configure(plc_url=sandbox.plc_url, handle_resolver=sandbox.pds_url,
                              cache_dir=tmp_path / "two", progress=False,
                              http=httpx.Client(transport=LoopbackTransport(),
                                                trust_env=False),
                              dns=NoDns())
    assert shortcuts.default_client() is second
    with pytest.raises(atrepo.ClientClosed):
        first.resolve("alice.test")
    assert len(atrepo.get_repo(alice["did"])) == alice["records"]
    assert (tmp_path / "two" / "repos").is_dir() and not (tmp_path / "one" / "repos").exists()


def test_configure_refuses_bad_options_and_keeps_the_client(tmp_path, fresh_default):
    kept = atrepo.configure(cache_dir=tmp_path, progress=False)
    with pytest.raises(atrepo.UsageError):
        atrepo.configure(plc_url="localhost:2582")
    assert shortcuts.default_client() is kept
