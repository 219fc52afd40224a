"""export(..., dask=): the same dataset from a LocalCluster (2 worker processes) as from here.

Against the multi-host sandbox (3 PDSes, one PLC, a moved account), with the PLC's listing as
the source so that every repository is sharded by the PDS it lives on. The workers' requests
go through a loopback forward proxy (their ``HTTP_PROXY``) that counts, per origin, the
requests in flight and stamps each arrival: the per-host limits are checked there, as upper
bounds only. A worker is killed from inside the driver's merge of the first shard result
(an event of the run, not a delay), while it holds a shard.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import distributed
import httpx
import polars as pl
import pytest
from _loopback import LoopbackTransport, NoDns, client

import atrepo
from atrepo.client import Client
from atrepo.dataset import DatasetExport
from atrepo.retry import RateLimit
from atrepo.sandbox import Sandbox

SECRET = "s3cret-header-value"
USERINFO = "s3cret-userinfo"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, as the proxy counts by."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


class CountingProxy:
    """A forward HTTP proxy on 127.0.0.1 that forwards only to loopback origins.

    Per origin it keeps each request's arrival (monotonic seconds), path and headers, and the
    most requests it held at once. A request counts as held from its arrival until its
    answer is about to be written: within the time the client holds it, so what is counted
    is never more than the client had in flight.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, float, str, dict[str, str]]] = []
        self._held: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.most.clear()

    def stamps(self, origin: str) -> list[float]:
        with self._lock:
            return [t for o, t, _, _ in self.seen if o == origin]

    def paths(self, origin: str) -> list[str]:
        with self._lock:
            return [p for o, _, p, _ in self.seen if o == origin]

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        target = urlsplit(handler.path)
        origin = _origin(handler.path)
        with self._lock:
            self.seen.append((origin, time.monotonic(), target.path,
                              {k.lower(): v for k, v in handler.headers.items()}))
            self._held[origin] += 1
            self.most[origin] = max(self.most[origin], self._held[origin])
        try:
            if not _loopback(target.hostname or ""):
                raise ValueError(f"tests never leave loopback (asked for {target.hostname})")
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() not in {"proxy-connection", "connection", "keep-alive"}}
            query = f"?{target.query}" if target.query else ""
            upstream.request("GET", target.path + query, headers=headers)
            answer = upstream.getresponse()
            status, body = answer.status, answer.read()
            reply = [(k, v) for k, v in answer.getheaders()
                     if k.lower() not in {"transfer-encoding", "connection", "content-length",
                                          "keep-alive"}]
            upstream.close()
        finally:
            with self._lock:
                self._held[origin] -= 1
        handler.send_response(status)
        for key, value in reply:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                proxy._forward(self)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def sb(multihost_sandbox: Sandbox) -> Sandbox:
    return multihost_sandbox


@pytest.fixture(scope="module")
def proxy() -> Iterator[CountingProxy]:
    made = CountingProxy()
    yield made
    made.close()


@pytest.fixture(scope="module")
def dask(proxy: CountingProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A distributed.Client on 2 worker processes of one thread, sharing a cache directory."""
    cache = tmp_path_factory.mktemp("worker-cache")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
        env={"ATREPO_CACHE_DIR": str(cache), "HTTP_PROXY": proxy.url})
    made = distributed.Client(cluster)
    yield made
    made.close()
    cluster.close()


def _client(sb: Sandbox, cache: Path, **options: Any) -> Any:
    return client("sync", sb, cache, handle_resolver=sb.handle_resolver, **options)


@pytest.fixture(scope="module")
def source(sb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Every DID of the sandbox with the PDS its document names (the PLC's listing)."""
    with _client(sb, tmp_path_factory.mktemp("plc")) as made:
        return made.list_plc()


@pytest.fixture(scope="module")
def local(sb: Sandbox, source: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Any, Path]:
    """The same source exported here, without Dask: the reference dataset."""
    out = tmp_path_factory.mktemp("local") / "ds"
    with _client(sb, tmp_path_factory.mktemp("local-cache")) as made:
        return made.export(source, out), out


def _rows(out: Path) -> dict[str, pl.DataFrame]:
    """Every table of the dataset's latest version, row for row (fetch times left out)."""
    ds = atrepo.open_dataset(out)
    records = ds.records.collect()
    frames = {"records": records.drop("fetched_at").sort("did", "collection", "rkey"),
              "repos": ds.repos.collect().drop("fetched_at").sort("did")}
    for collection in sorted(set(records["collection"])):
        if atrepo.lexicon_schema(collection) is not None:
            frames[collection] = ds.table(collection).collect().sort("did", "rkey")
    return frames


def _same(out: Path, reference: Path) -> None:
    mine, theirs = _rows(out), _rows(reference)
    assert mine.keys() == theirs.keys()
    for name, frame in theirs.items():
        assert mine[name].equals(frame), name


def _counts(report: Any) -> tuple[int, int, int, int]:
    return report.written, report.skipped, report.removed, report.records


def _on_merge(monkeypatch: pytest.MonkeyPatch, hook: Callable[[Any], None]) -> list[str]:
    """Call ``hook(result)`` in the driver as each shard result is merged; return the ids."""
    merged: list[str] = []
    original = DatasetExport.merge

    def merge(self: DatasetExport, result: Any) -> bool:
        merged.append(result.id)
        hook(result)
        return original(self, result)

    monkeypatch.setattr(DatasetExport, "merge", merge)
    return merged


def _pds_origins(sb: Sandbox) -> list[str]:
    return [_origin(url) for url in sb.pds_urls]


def test_a_dask_export_equals_the_local_one(sb, source, local, dask, proxy, tmp_path,
                                            monkeypatch):
    reference_report, reference = local
    proxy.reset()
    merged = _on_merge(monkeypatch, lambda result: None)
    with _client(sb, tmp_path / "cache") as made:
        report = made.export(source, tmp_path / "ds", dask=dask, shard_repos=3)
        assert made.last_errors.equals(report.errors)
    _same(tmp_path / "ds", reference)
    assert _counts(report) == _counts(reference_report) and report.written > 0
    assert report.errors.sort("did").equals(reference_report.errors.sort("did"))
    # shards by the PDS each DID names, in ranges of 3, each merged once
    hosts = {f"{urlsplit(url).hostname}:{urlsplit(url).port}" for url in sb.pds_urls}
    labels = Counter(key.split("-")[2] for key in merged)
    assert set(labels) == hosts and len(set(merged)) == len(merged)
    per_host = Counter(shard_host for shard_host in source["pds"])
    assert sum(labels.values()) == sum(-(-n // 3) for n in per_host.values())
    # every repository came from a worker: its getRepo went through the workers' proxy
    fetched = sum(p.endswith("getRepo") for o in _pds_origins(sb) for p in proxy.paths(o))
    assert fetched == report.written


def test_a_refresh_on_dask_downloads_nothing_unchanged(sb, source, local, dask, proxy,
                                                       tmp_path):
    reference_report, reference = local
    with _client(sb, tmp_path / "cache") as made:
        first = made.export(source, tmp_path / "ds", dask=dask)
        proxy.reset()
        again = made.export(source, tmp_path / "ds", dask=dask)
    assert (again.written, again.removed, again.commits) == (0, 0, 0)
    # every repository: unchanged ones and those recorded unavailable already
    assert first.written > 0 and again.skipped == source.height
    assert again.version == first.version
    assert not [p for o in _pds_origins(sb) for p in proxy.paths(o) if p.endswith("getRepo")]
    _same(tmp_path / "ds", reference)


def _processing(dask: Any) -> dict[str, list[str]]:
    """Each worker's address -> the shard keys it holds."""
    def on_scheduler(dask_scheduler: Any) -> dict[str, list[str]]:
        return {ws.address: [str(ts.key) for ts in ws.processing]
                for ws in dask_scheduler.workers.values()}

    return dask.run_on_scheduler(on_scheduler)


def test_a_lost_worker_loses_nothing(sb, source, local, dask, tmp_path, monkeypatch):
    _, reference = local
    dask.wait_for_workers(2)
    killed: list[tuple[str, list[str]]] = []

    def kill_one(result: Any) -> None:
        if killed:
            return
        address, keys = max(_processing(dask).items(), key=lambda item: len(item[1]))
        pid = dask.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        killed.append((address, keys))

    merged = _on_merge(monkeypatch, kill_one)
    with _client(sb, tmp_path / "cache") as made:
        report = made.export(source, tmp_path / "ds", dask=dask, shard_repos=2)
    (address, held), = killed
    assert held, "the killed worker held no shard: the test proved nothing"
    assert set(held) <= set(merged) and len(set(merged)) == len(merged)
    _same(tmp_path / "ds", reference)
    assert report.errors.height == local[0].errors.height
    dask.wait_for_workers(2)   # the nanny restarted it, for the tests after this one


def test_each_hosts_rate_holds_across_the_cluster(sb, source, dask, proxy, tmp_path):
    rate = RateLimit(requests=4, per=1.0, burst=1)
    proxy.reset()
    with _client(sb, tmp_path / "cache", max_per_host=2, rate_limit=rate) as made:
        report = made.export(source, tmp_path / "ds", dask=dask, shard_repos=1)
    assert report.written > 0
    for origin in _pds_origins(sb):
        stamps = proxy.stamps(origin)
        assert proxy.most[origin] <= 2, origin
        # a token bucket lets through its burst and then its rate: between the first and
        # the last arrival no more than that, with 250 ms for the first request's arrival
        # lagging its send (a busy machine delays arrivals; every later one only widens the
        # span, so the bound holds however late they are)
        arrived = sorted(stamps)
        if arrived:
            span = arrived[-1] - arrived[0]
            assert len(arrived) <= rate.capacity + rate.rate * (span + 0.25), origin
    # the bounds were worth checking: the busiest host sent more than a window's worth
    assert max(len(proxy.stamps(o)) for o in _pds_origins(sb)) > rate.requests


def test_each_hosts_concurrency_holds_across_the_cluster(sb, source, dask, proxy, tmp_path):
    """Shards of 4 repositories fetched 8 at a time: only the shares keep a host at 2."""
    proxy.reset()
    with _client(sb, tmp_path / "cache", max_per_host=2, rate_limit=None) as made:
        report = made.export(source, tmp_path / "ds", dask=dask, shard_repos=4)
    assert report.written > 0
    for origin in _pds_origins(sb):
        assert 1 <= proxy.most[origin] <= 2, origin


def test_secrets_stay_with_the_caller(sb, source, dask, proxy, tmp_path, monkeypatch):
    plc = urlsplit(sb.plc_url)
    specs: list[bytes] = []

    def on_scheduler(dask_scheduler: Any) -> list[tuple[str, bytes]]:
        return [(str(key), pickle.dumps(ts.run_spec)) for key, ts in
                dask_scheduler.tasks.items()]

    def capture(result: Any) -> None:
        for key, spec in dask.run_on_scheduler(on_scheduler):
            specs.extend([key.encode(), spec])

    _on_merge(monkeypatch, capture)
    http = httpx.Client(transport=LoopbackTransport(), trust_env=False, timeout=20,
                        headers={"Authorization": f"Bearer {SECRET}"})
    proxy.reset()
    with Client(http=http, dns=NoDns(), handle_resolver=sb.handle_resolver,
                plc_url=f"http://atrepo:{USERINFO}@{plc.netloc}", cache_dir=tmp_path / "c",
                progress=False) as made:
        report = made.export(source.head(6), tmp_path / "ds", dask=dask, shard_repos=2)
    assert report.written > 0 and specs
    logs = repr(dask.get_worker_logs()) + repr(dask.get_scheduler_logs())
    for secret in (SECRET, USERINFO):
        assert not [blob for blob in specs if secret.encode() in blob]
        assert secret not in logs
    # the caller's http client (and its headers) never left this process
    assert not [h for _, _, _, h in proxy.seen if SECRET in h.get("authorization", "")]


def test_dask_takes_a_distributed_client(sb, tmp_path):
    with _client(sb, tmp_path / "cache") as made:
        with pytest.raises(atrepo.UsageError, match="dask= takes a distributed.Client"):
            made.export(sb.pds_url, tmp_path / "ds", dask="tcp://127.0.0.1:8786")
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("shard_repos", [0, True, 2.5])
def test_a_bad_shard_size_is_refused_before_the_dataset_is_made(sb, dask, tmp_path,
                                                                shard_repos):
    with _client(sb, tmp_path / "cache") as made:
        with pytest.raises(atrepo.UsageError, match="shard_repos must be a whole number"):
            made.export(sb.pds_urls[0], tmp_path / "ds", dask=dask, shard_repos=shard_repos)
    assert not (tmp_path / "ds").exists()   # refused before the dataset and the listing


def test_the_async_client_runs_the_same_export_from_names(sb, source, local, dask,
                                                          tmp_path, monkeypatch):
    """Names (DIDs here) form the one ``names`` group; the driver runs in a thread."""
    reference_report, reference = local
    merged = _on_merge(monkeypatch, lambda result: None)
    made = client("async", sb, tmp_path / "cache", handle_resolver=sb.handle_resolver)

    async def go() -> Any:
        async with made:
            return await made.export(source["did"].to_list(), tmp_path / "ds", dask=dask,
                                     shard_repos=6)

    report = asyncio.run(go())
    assert _counts(report) == _counts(reference_report)
    assert sorted(key.rsplit("-", 1)[0] for key in merged) == [
        f"atrepo-export-names-{n}" for n in range(-(-source.height // 6))]
    _same(tmp_path / "ds", reference)


def test_a_host_source_is_sharded_in_ranges_of_its_listing(sb, dask, tmp_path, monkeypatch):
    host = sb.pds_urls[0]
    with _client(sb, tmp_path / "local-cache") as made:
        expected = made.export(host, tmp_path / "local")
        listed = made.list_repos(host)
    merged = _on_merge(monkeypatch, lambda result: None)
    with _client(sb, tmp_path / "cache") as made:
        report = made.export(host, tmp_path / "ds", dask=dask, shard_repos=2)
    assert _counts(report) == _counts(expected)
    label = f"{urlsplit(host).hostname}:{urlsplit(host).port}"
    active = listed.filter(pl.col("active")).height
    assert sorted(key.rsplit("-", 1)[0] for key in merged) == sorted(
        f"atrepo-export-{label}-{n}" for n in range(-(-active // 2)))
    _same(tmp_path / "ds", tmp_path / "local")
    assert atrepo.open_dataset(tmp_path / "ds").meta["hosts"] == [host]
