"""The sync flows (getRepo, listRepos, ...) and their retry loop.

Most tests drive a flow by hand: they send :class:`HttpResponse` values or throw
``TransportError`` into the generator and read the :class:`Sleep` delays it yields. The
last ones run flows through ``run_sync`` and ``run_async`` against ``httpx.MockTransport``
(downloads to files, a gzip bomb, sleeping). Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from atrepo._flows.effects import Flow, HttpDownload, HttpGet, HttpResponse, Sleep
from atrepo._flows.policy import RetryPolicy
from atrepo._flows.sync import (
    RepoRef,
    _jitter,
    describe_repo,
    get_latest_commit,
    get_repo,
    list_repos_by_collection_page,
    list_repos_page,
    request,
    walk_cursor,
    xrpc_error,
)
from atrepo._io.drivers import run_async, run_sync
from atrepo.errors import RateLimited, RepoUnavailable, ResponseTooLarge, TransportError

PDS = "https://pds.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
DID2 = "did:plc:yk4dd2qkboz2yv6tpubpc6co"
ENC_DID = DID.replace(":", "%3A")
LATEST = f"{PDS}/xrpc/com.atproto.sync.getLatestCommit?did={ENC_DID}"
GET_REPO = f"{PDS}/xrpc/com.atproto.sync.getRepo?did={ENC_DID}"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"
MODES = ["sync", "async"]
FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


def ok(obj: Any, **headers: str) -> HttpResponse:
    return HttpResponse(200, headers=headers, body=json.dumps(obj).encode())


def error(status: int, name: str | None = None, message: str | None = None,
          **headers: str) -> HttpResponse:
    obj = {key: value for key, value in (("error", name), ("message", message)) if value}
    return HttpResponse(status, headers=headers, body=json.dumps(obj).encode())


class Driver:
    """Drives a flow by hand: answers HTTP effects from a script, records everything."""

    def __init__(self) -> None:
        self.effects: list[Any] = []
        self.sleeps: list[float] = []

    @property
    def requests(self) -> list[HttpGet | HttpDownload]:
        return [effect for effect in self.effects if not isinstance(effect, Sleep)]

    def run(self, flow: Flow[Any], answers: list[HttpResponse | Exception]) -> Any:
        pending = list(answers)
        try:
            effect = next(flow)
            while True:
                self.effects.append(effect)
                if isinstance(effect, Sleep):
                    self.sleeps.append(effect.seconds)
                    effect = flow.send(None)
                    continue
                answer = pending.pop(0)
                if isinstance(answer, Exception):
                    effect = flow.throw(answer)
                else:
                    effect = flow.send(answer)
        except StopIteration as done:
            assert not pending, "the flow stopped before using every answer"
            return done.value


def drive(flow: Flow[Any], answers: list[HttpResponse | Exception]) -> tuple[Any, Driver]:
    driver = Driver()
    return driver.run(flow, answers), driver


# -- the retry loop ------------------------------------------------------------------------


def test_success_first_time():
    value, driver = drive(get_latest_commit(PDS, DID), [ok({"cid": CID, "rev": REV})])
    assert value == (CID, REV)
    assert driver.sleeps == []
    (effect,) = driver.requests
    assert isinstance(effect, HttpGet)
    assert effect.url == LATEST
    assert ("accept", "application/json") in effect.headers


def test_429_with_retry_after_then_success():
    answers = [error(429, "RateLimitExceeded", **{"retry-after": "7"}),
               ok({"cid": CID, "rev": REV})]
    value, driver = drive(get_latest_commit(PDS, DID), answers)
    assert value == (CID, REV)
    assert driver.sleeps == [7.0]


def test_429_with_http_date_uses_the_date_header_as_now():
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT",
               "date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    _, driver = drive(get_latest_commit(PDS, DID),
                      [error(429, **headers), ok({"cid": CID, "rev": REV})])
    assert driver.sleeps == [10.0]


def test_429_without_retry_after_backs_off_deterministically():
    _, driver = drive(get_latest_commit(PDS, DID), [error(429), ok({"cid": CID, "rev": REV})])
    assert driver.sleeps == [RetryPolicy().base_delay * _jitter(LATEST, 0)]


def test_429_beyond_the_budget_raises_rate_limited():
    policy = RetryPolicy(rate_limit_retries=2)
    driver = Driver()
    with pytest.raises(RateLimited) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy),
                   [error(429, **{"retry-after": "5"})] * 3)
    assert info.value.host == "pds.test"
    assert info.value.retry_after == 5.0
    assert driver.sleeps == [5.0, 5.0]
    assert len(driver.requests) == 3


def test_5xx_then_success_with_exact_backoff():
    answers = [error(500), error(503), ok({"cid": CID, "rev": REV})]
    value, driver = drive(get_latest_commit(PDS, DID), answers)
    assert value == (CID, REV)
    base = RetryPolicy().base_delay
    assert driver.sleeps == [base * _jitter(LATEST, 0), base * 2 * _jitter(LATEST, 1)]
    _, again = drive(get_latest_commit(PDS, DID), answers)
    assert again.sleeps == driver.sleeps  # pure: the same script sleeps the same


def test_5xx_until_exhausted():
    policy = RetryPolicy(retries=2)
    driver = Driver()
    with pytest.raises(TransportError) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy), [error(503)] * 3)
    assert info.value.url == LATEST
    assert info.value.fields["reason"] == "status 503"
    assert len(driver.sleeps) == 2


def test_transport_errors_until_exhausted():
    policy = RetryPolicy(retries=3)
    failure = TransportError("connection failed", url=LATEST, reason="refused")
    driver = Driver()
    with pytest.raises(TransportError) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy), [failure] * 4)
    assert info.value.url == LATEST
    assert "connection failed (refused)" in str(info.value)
    assert info.value.__cause__ is failure
    assert len(driver.sleeps) == 3
    assert all(0.0 <= delay < 30.0 for delay in driver.sleeps)


def test_transport_error_then_success():
    failure = TransportError("request timed out", url=LATEST)
    value, driver = drive(get_latest_commit(PDS, DID), [failure, ok({"cid": CID, "rev": REV})])
    assert value == (CID, REV)
    assert len(driver.sleeps) == 1


def test_too_large_is_not_retried():
    failure = ResponseTooLarge(LATEST, max_bytes=10)
    with pytest.raises(TransportError, match="response too large"):
        drive(get_latest_commit(PDS, DID), [failure])


@pytest.mark.parametrize("status", [400, 403, 501])
def test_request_returns_final_statuses_to_the_caller(status):
    effect = HttpGet(f"{PDS}/x")
    value, driver = drive(request(lambda: effect, host="pds.test"), [error(status)])
    assert value.status == status
    assert driver.sleeps == []


def test_request_rejects_a_wrong_answer():
    flow = request(lambda: HttpGet(f"{PDS}/x"), host="pds.test")
    next(flow)
    with pytest.raises(TypeError):
        flow.send(None)


def test_jitter_is_pure_and_in_range():
    values = {_jitter(f"{PDS}/x", attempt) for attempt in range(50)}
    assert len(values) == 50
    assert all(0.0 <= value < 1.0 for value in values)
    assert _jitter(f"{PDS}/x", 3) == _jitter(f"{PDS}/x", 3)


# -- single repositories -------------------------------------------------------------------


def test_get_repo_yields_a_download(tmp_path):
    path = str(tmp_path / "repo.car")
    value, driver = drive(get_repo(PDS + "/", DID, path=path, since="3l3 x&y", max_bytes=99),
                          [HttpResponse(200)])
    assert value is None
    (effect,) = driver.requests
    assert isinstance(effect, HttpDownload)
    assert effect.url == f"{GET_REPO}&since=3l3+x%26y"
    assert (effect.path, effect.max_bytes) == (path, 99)
    assert ("accept", "application/vnd.ipld.car") in effect.headers


UNAVAILABLE = [("RepoNotFound", "not_found"), ("RepoDeactivated", "deactivated"),
               ("RepoTakendown", "takendown"), ("RepoSuspended", "suspended")]


@pytest.mark.parametrize(("name", "status"), UNAVAILABLE)
def test_repo_unavailable_statuses(name, status):
    for flow in (get_repo(PDS, DID, path="unused.car"), get_latest_commit(PDS, DID),
                 describe_repo(PDS, DID)):
        with pytest.raises(RepoUnavailable) as info:
            drive(flow, [error(400, name, f"Repo is {status}")])
        assert (info.value.status, info.value.did) == (status, DID)
        assert info.value.fields["error"] == name


@pytest.mark.parametrize("status", [404, 410])
def test_not_found_status(status):
    with pytest.raises(RepoUnavailable) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [HttpResponse(status, body=b"<html>")])
    assert info.value.status == "not_found"


@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00", b"[" * 100_000, b'"text"', b"[1, 2]",
                                  b'{"error": 5, "message": ["x"]}', b"null", b"{"])
def test_garbage_error_bodies(body):
    assert xrpc_error(HttpResponse(400, body=body)) == (None, None)
    with pytest.raises(TransportError) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [HttpResponse(400, body=body)])
    assert info.value.url == GET_REPO
    assert info.value.fields["http_status"] == 400


def test_xrpc_error_cuts_long_text():
    name, message = xrpc_error(error(400, "X" * 10_000, "line\nbreak"))
    assert name is not None and len(name) == 200 and name.endswith("...")
    assert message == "line break"


def test_other_error_names_the_url_status_and_error():
    with pytest.raises(TransportError) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [error(400, "InvalidRequest", "bad did")])
    assert info.value.url == GET_REPO
    assert (info.value.fields["http_status"], info.value.fields["error"]) == (400,
                                                                             "InvalidRequest")
    assert "bad did" in str(info.value)


def test_unavailable_names_only_count_on_4xx():
    with pytest.raises(TransportError):
        drive(get_repo(PDS, DID, path="unused.car"), [error(501, "RepoTakendown")])


@pytest.mark.parametrize("obj", [{}, {"cid": CID}, {"cid": 1, "rev": REV}, [CID, REV],
                                 {"cid": "", "rev": REV}])
def test_malformed_latest_commit(obj):
    with pytest.raises(TransportError, match="malformed getLatestCommit"):
        drive(get_latest_commit(PDS, DID), [ok(obj)])


def test_describe_repo():
    collections = ["app.bsky.feed.post", "app.bsky.graph.follow"]
    value, driver = drive(describe_repo(PDS, DID),
                          [ok({"did": DID, "collections": collections, "didDoc": {}})])
    assert value == collections
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.repo.describeRepo"
                                      f"?repo={ENC_DID}")
    with pytest.raises(TransportError, match="malformed describeRepo"):
        drive(describe_repo(PDS, DID), [ok({"collections": [1]})])


# -- many repositories ---------------------------------------------------------------------


def test_list_repos_page():
    page = {"cursor": "c2", "repos": [
        {"did": DID, "head": CID, "rev": REV, "active": True, "extra": 1},
        {"did": DID2, "head": CID, "rev": REV, "active": False, "status": "takendown"},
        {"did": "did:web:example.com", "head": None, "rev": None, "active": None},
        {"did": "did:web:example.org"},
    ]}
    (repos, cursor), driver = drive(list_repos_page(PDS, cursor="c 1"), [ok(page)])
    assert cursor == "c2"
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.sync.listRepos"
                                      "?limit=1000&cursor=c+1")
    assert repos[0] == RepoRef(did=DID, head=CID, rev=REV)
    assert (repos[1].active, repos[1].status) == (False, "takendown")
    assert repos[2].active and repos[3].active and repos[3].head is None
    with pytest.raises(Exception):  # noqa: B017 - frozen pydantic model
        repos[0].did = DID2  # type: ignore[misc]


def test_list_repos_page_last_page_and_limit_clamp():
    (repos, cursor), driver = drive(list_repos_page(PDS, cursor=None, limit=5000),
                                    [ok({"repos": []})])
    assert (repos, cursor) == ([], None)
    assert driver.requests[0].url.endswith("listRepos?limit=1000")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"repos": {}}', b'{"cursor": "c"}',
                                  b'{"repos": [{"did": "alice"}]}', b'{"repos": [{}]}',
                                  b'{"repos": [], "cursor": 5}', b'{"repos": [7]}',
                                  b'{"repos": [{"did": "did:plc:x", "active": "maybe"}]}'])
def test_list_repos_page_rejects_malformed_pages(body):
    with pytest.raises(TransportError, match="malformed listRepos") as info:
        drive(list_repos_page(PDS, cursor=None), [HttpResponse(200, body=body)])
    assert info.value.fields["host"] == PDS


def test_list_repos_page_error_status():
    with pytest.raises(TransportError) as info:
        drive(list_repos_page(PDS, cursor=None), [error(400, "InvalidRequest")])
    assert info.value.fields["error"] == "InvalidRequest"


def test_walk_cursor_rules():
    assert walk_cursor(None, "c1", 10) == ("c1", None)
    assert walk_cursor("c1", "c2", 10) == ("c2", None)
    assert walk_cursor("c1", None, 10) == (None, None)
    assert walk_cursor("c1", "", 0) == (None, None)
    cursor, warning = walk_cursor("c1", "c1", 10)
    assert cursor is None and warning is not None and "did not advance" in warning
    cursor, warning = walk_cursor("c1", "c2", 0)
    assert cursor is None and warning is not None and "empty page" in warning


def test_list_repos_by_collection_page():
    page = {"repos": [{"did": DID}, {"did": DID2}], "cursor": "next"}
    value, driver = drive(list_repos_by_collection_page(PDS, "app.bsky.feed.post", cursor=None),
                          [ok(page)])
    assert value == ([DID, DID2], "next")
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.sync.listReposByCollection"
                                      "?collection=app.bsky.feed.post&limit=1000")


@pytest.mark.parametrize("response", [HttpResponse(404), HttpResponse(501),
                                      error(400, "MethodNotImplemented"),
                                      error(501, "XRPCNotSupported"),
                                      error(400, "XRPCNotSupported")])
def test_list_repos_by_collection_not_implemented(response):
    value, _ = drive(list_repos_by_collection_page(PDS, "a.b.c", cursor="x"), [response])
    assert value is None


def test_list_repos_by_collection_other_errors():
    with pytest.raises(TransportError):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None),
              [error(400, "InvalidRequest")])
    with pytest.raises(TransportError, match="malformed listReposByCollection"):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None),
              [ok({"repos": [{"did": 3}]})])


# -- through the drivers -------------------------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def run(mode: str, flow: Flow[Any], handler: Handler) -> Any:
    transport = httpx.MockTransport(handler)
    if mode == "sync":
        with httpx.Client(transport=transport) as http:
            return run_sync(flow, http, dns=None)  # type: ignore[arg-type]

    async def main() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await run_async(flow, http, dns=None)  # type: ignore[arg-type]

    return asyncio.run(main())


class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends one chunk and then loses the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"x" * 1000
        raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("mode", MODES)
def test_download_writes_the_file(mode, tmp_path):
    path = tmp_path / "repo.car"
    path.write_bytes(b"old content that is longer than the new one")
    car = bytes(range(256)) * 100

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == GET_REPO
        assert request.headers["accept"] == "application/vnd.ipld.car"
        return httpx.Response(200, content=car)

    assert run(mode, get_repo(PDS, DID, path=str(path)), handler) is None
    assert path.read_bytes() == car


@pytest.mark.parametrize("mode", MODES)
def test_download_decodes_gzip(mode, tmp_path):
    path = tmp_path / "repo.car"
    car = b"car bytes " * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=gzip.compress(car),
                              headers={"content-encoding": "gzip"})

    run(mode, get_repo(PDS, DID, path=str(path)), handler)
    assert path.read_bytes() == car


@pytest.mark.parametrize("mode", MODES)
def test_gzip_bomb_is_cut_and_leaves_no_file(mode, tmp_path):
    path = tmp_path / "repo.car"
    bomb = gzip.compress(b"\0" * (4 << 20))
    assert len(bomb) < 64 * 1024
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"})

    with pytest.raises(TransportError, match="response too large") as info:
        run(mode, get_repo(PDS, DID, path=str(path), max_bytes=1 << 20), handler)
    assert info.value.url == GET_REPO
    assert not path.exists()
    assert len(calls) == 1  # not retried


@pytest.mark.parametrize("mode", MODES)
def test_declared_length_too_large(mode, tmp_path):
    path = tmp_path / "repo.car"
    handler: Handler = lambda request: httpx.Response(200, content=b"x" * 2000)  # noqa: E731
    with pytest.raises(TransportError, match="response too large"):
        run(mode, get_repo(PDS, DID, path=str(path), max_bytes=1000), handler)
    assert not path.exists()


@pytest.mark.parametrize("mode", MODES)
def test_broken_download_leaves_no_file_and_is_retried(mode, tmp_path):
    path = tmp_path / "repo.car"
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, stream=Broken())

    with pytest.raises(TransportError) as info:
        run(mode, get_repo(PDS, DID, path=str(path), policy=FAST), handler)
    assert info.value.url == GET_REPO
    assert not path.exists()
    assert len(calls) == FAST.retries + 1


@pytest.mark.parametrize("mode", MODES)
def test_download_error_body_leaves_the_file_alone(mode, tmp_path):
    path = tmp_path / "repo.car"
    taken: Handler = lambda request: httpx.Response(  # noqa: E731
        400, json={"error": "RepoTakendown", "message": "gone"})
    with pytest.raises(RepoUnavailable) as info:
        run(mode, get_repo(PDS, DID, path=str(path)), taken)
    assert info.value.status == "takendown"
    assert not path.exists()

    def capture() -> Flow[HttpResponse]:
        response = yield HttpDownload(GET_REPO, str(path))
        return response

    huge: Handler = lambda request: httpx.Response(500, content=b"e" * (200 << 10))  # noqa: E731
    response = run(mode, capture(), huge)
    assert (response.status, len(response.body)) == (500, 64 * 1024)
    assert not path.exists()


@pytest.mark.parametrize("mode", MODES)
def test_sleep_is_performed(mode):
    def naps() -> Flow[float]:
        start = time.monotonic()
        answer = yield Sleep(0.02)
        assert answer is None
        yield Sleep(-1.0)  # nothing to wait for
        return time.monotonic() - start

    assert run(mode, naps(), lambda request: httpx.Response(599)) >= 0.02


@pytest.mark.parametrize("mode", MODES)
def test_retries_through_the_driver(mode, tmp_path):
    statuses = iter([503, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json={"cid": CID, "rev": REV})
        return httpx.Response(status, headers={"retry-after": "0"})

    assert run(mode, get_latest_commit(PDS, DID, policy=FAST), handler) == (CID, REV)


def test_repo_ref_rejects_bad_dids():
    with pytest.raises(ValueError):
        RepoRef(did="alice")
