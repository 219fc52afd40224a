"""The edges of Client and AsyncClient: closed clients, bad arguments, names, one bar per call.

Each scenario runs for both clients, against the sandbox where it needs a server (loopback
only, no DNS: see ``_loopback``).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from _loopback import KINDS, call, client

import atrepo
from atrepo.client import AsyncClient, Client

DID = "did:plc:abcdefghijklmnopqrstuvwx"
HOST = "http://127.0.0.1:9"


def _public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, callable)
            if not name.startswith("_") and name not in ("close", "aclose")}


def _calls(tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    """One call of every public method (the arguments do not matter: nothing may run)."""
    return {"resolve": ("alice.test",), "resolve_handle": ("alice.test",),
            "get_repo": ("alice.test",), "diff": ("alice.test",), "snapshots": (DID,),
            "snapshot": (DID,), "iter_repos": (HOST,), "list_repos": (HOST,),
            "fetch_records": (["alice.test"],),
            "list_repos_by_collection": ("app.bsky.feed.post", HOST),
            "list_hosts": (HOST,), "list_plc": (),
            "export": (["alice.test"], tmp_path / "out")}


def _refused(client_: Any, method: str, args: tuple[Any, ...]) -> None:
    """Call ``method`` on a closed sync client and drain what it returns."""
    with pytest.raises(atrepo.ClientClosed, match="client is closed"):
        result = getattr(client_, method)(*args)
        if method == "iter_repos":
            list(result)


async def _arefused(client_: Any, method: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(atrepo.ClientClosed, match="client is closed"):
        if method == "iter_repos":
            [repo async for repo in client_.iter_repos(*args)]
        else:
            await getattr(client_, method)(*args)


def test_every_method_of_a_closed_client_says_it_is_closed(tmp_path):
    calls = _calls(tmp_path)
    assert _public_methods(Client) == set(calls)  # a new method joins this table
    made = Client(cache_dir=tmp_path / "c", progress=False)
    made.close()
    made.close()  # closing twice is harmless
    for method, args in calls.items():
        _refused(made, method, args)
    with pytest.raises(atrepo.ClientClosed):
        made.__enter__()
    assert not (tmp_path / "out").exists()


def test_every_method_of_a_closed_async_client_says_it_is_closed(tmp_path):
    calls = _calls(tmp_path)
    assert _public_methods(AsyncClient) == set(calls)

    async def go() -> None:
        async with AsyncClient(cache_dir=tmp_path / "c", progress=False) as made:
            pass
        for method, args in calls.items():
            await _arefused(made, method, args)
        with pytest.raises(atrepo.ClientClosed):
            await made.__aenter__()

    asyncio.run(go())


def test_a_client_whose_httpx_client_was_closed_says_so(tmp_path):
    http = httpx.Client()
    made = Client(http=http, cache_dir=tmp_path, progress=False)
    http.close()
    with pytest.raises(atrepo.ClientClosed):
        made.resolve_handle("alice.test")
    made.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "args", "kwargs", "argument"), [
    ("list_repos", (HOST,), {"limit": "10"}, "limit"),
    ("list_repos", (HOST,), {"resume": "yes"}, "resume"),
    ("list_repos", ("localhost:2583",), {}, "host"),
    ("list_repos_by_collection", ("app.bsky.feed.post", "localhost:2583"), {}, "host"),
    ("list_repos_by_collection", (["app.bsky.feed.post"], HOST), {}, "collection"),
    ("fetch_records", (42,), {}, "dids_or_handles"),
    ("fetch_records", (["alice.test"],), {"collections": 3}, "collections"),
    ("get_repo", ("alice.test",), {"collections": [None]}, "collections"),
])
def test_bad_arguments_are_usage_errors_naming_them(kind, sandbox, tmp_path, method, args,
                                                     kwargs, argument):
    with pytest.raises(atrepo.UsageError) as info:
        call(kind, sandbox, tmp_path, method, *args, **kwargs)
    assert info.value.argument == argument and f"argument={argument}" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_string_given_to_fetch_records_is_one_name(kind, sandbox, tmp_path):
    made: Any = client(kind, sandbox, tmp_path)

    async def fetch() -> Any:
        async with made:
            return await made.fetch_records("alice.test"), made.last_errors

    if isinstance(made, Client):
        with made:
            frame, errors = made.fetch_records("alice.test"), made.last_errors
    else:
        frame, errors = asyncio.run(fetch())
    assert errors.height == 0
    assert frame.height == sandbox.account("alice.test")["records"]


@pytest.fixture
def bars(monkeypatch):
    """Every tqdm bar made, with what it showed when it closed."""
    import tqdm.auto

    made: list[Any] = []

    class Recording(tqdm.auto.tqdm):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, file=io.StringIO(), **kwargs)
            made.append(self)

        def close(self) -> None:
            self.shown = str(self)
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    return made


@pytest.mark.parametrize("kind", KINDS)
def test_a_bulk_call_shows_one_bar_counting_repositories(kind, sandbox, tmp_path, bars):
    alice = sandbox.account("alice.test")
    names = ["alice.test", alice["did"], sandbox.account("bob.test")["did"]]
    made: Any = client(kind, sandbox, tmp_path, progress=True)

    async def fetch() -> Any:
        async with made:
            return await made.fetch_records(names)

    if isinstance(made, Client):
        with made:
            frame = made.fetch_records(names)
    else:
        frame = asyncio.run(fetch())
    assert frame.height == 2 * alice["records"]  # both copies decoded, under the one bar
    assert [bar.desc for bar in bars] == ["fetching repos"]
    assert "3/3" in bars[0].shown and "3.0" not in bars[0].shown


@pytest.mark.parametrize("kind", KINDS)
def test_a_warning_names_the_users_line(kind, sandbox, tmp_path):
    made: Any = client(kind, sandbox, tmp_path)

    async def in_a_coroutine() -> None:
        async with made:
            await made.list_repos_by_collection("app.bsky.feed.post", sandbox.pds_url)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "sync":
            with made:
                made.list_repos_by_collection("app.bsky.feed.post", sandbox.pds_url)
        else:
            asyncio.run(in_a_coroutine())
    assert caught and {w.filename for w in caught} == {__file__}


@pytest.mark.parametrize("kind", KINDS)
def test_an_unavailable_repository_diffs_without_a_warning(kind, sandbox, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(atrepo.RepoUnavailable):
            call(kind, sandbox, tmp_path, "diff", sandbox.account("bob.test")["did"])
    assert [str(w.message) for w in caught] == []
