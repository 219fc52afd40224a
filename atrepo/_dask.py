"""``client.export(..., dask=distributed_client)``: the same export, its fetching on a cluster.

What runs where:

* **The caller's process (the driver)** owns the dataset: it lists a host source, plans
  with :meth:`~atrepo.dataset.DatasetExport.plan` (unchanged, inactive and excluded
  repositories are decided there, with no task), splits the rest into *shards* and submits
  them, takes each result as it completes (``distributed.as_completed``), merges it into
  the dataset (:meth:`~atrepo.dataset.DatasetExport.merge`: once per shard, committed by
  the export's batch bounds) and shows the one progress bar.
* **Workers** run a shard each: a :class:`~atrepo.Client` built once per worker process
  from the caller's settings runs the export's per-repository flows
  (:class:`~atrepo._bulk.ExportRun` over a :class:`~atrepo.dataset._export.ShardExport`)
  and returns the shard's batches, counts and errors. Workers never write the dataset.

Shards go by host: a target's host is the ``host`` or ``pds`` column of a frame source or
the listed host (names, which only resolve on the worker, form one group, ``names``). The
work of one host is cut, in the listing's DID order, into contiguous ranges of
``shard_repos`` repositories (a large host's ``listRepos`` cursor ranges). Task keys are
``atrepo-export-<host>-<n>-<run>``, so the dashboard shows which host a task serves.

Politeness across the cluster (:func:`host_share`): the driver keeps at most ``L`` shards
of one host in flight, and each worker process's client gets ``1/L`` of the client's
``max_per_host`` and ``1/max(L, P)`` of its ``rate_limit`` for ``P`` workers (the cluster's
at the start of the export), so the ``L`` shards of a host stay within its limits, and
servers every shard asks (the PLC directory, a handle resolver, a moved account's new PDS)
get at most the caller's rate from all workers together. ``L`` is at most
:data:`MAX_HOST_SHARDS`, ``max_per_host``, and half the rate's requests. A shared limiter (a
distributed Semaphore, or an actor holding the token buckets) would cost a scheduler round
trip per request; a share per worker costs nothing per request. What the shares do not
bound: workers that join after the start (an adaptive cluster), and the requests in flight
at once to a server every shard asks (up to ``P`` times the worker's slots).

Bounded: at most ``2 x`` the cluster's threads shards are in flight (and ``L`` per host),
shards are made only when submitted, and each result is released once merged, so the
driver's memory does not grow with the number of shards.

Worker loss: shards are submitted with ``retries=`` :data:`SHARD_RETRIES`, so those of a
lost worker run again elsewhere; a shard's result is applied once (by its id) and each
result's batches replace the rows of their DIDs, so nothing is lost or doubled.

Secrets: the caller's ``http=`` client (its headers, auth, transport) and ``dns=`` never
travel; workers make their own. The settings that do (:class:`~atrepo._config.ClientConfig`,
whose URLs may hold userinfo, and the ``exclude`` DIDs) are scattered once to every worker as
data, so task keys and specs hold only a reference to them, host names without userinfo,
and DIDs.

Worker cache directories: the shipped settings leave ``cache_dir`` unset, so each worker
uses its own default: ``$ATREPO_CACHE_DIR`` in the worker's environment, else the worker
user's ``~/.cache/atrepo``, which must be a local disk (the store locks files with flock).
"""

from __future__ import annotations

import atexit
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._bulk import ExportRun
from ._config import ClientConfig
from ._progress import progress
from .dataset import DatasetExport, ExportReport, Target
from .dataset._export import Shard, ShardExport, ShardResult
from .errors import UsageError
from .retry import RateLimit

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAX_HOST_SHARDS", "SHARD_REPOS", "SHARD_RETRIES", "check_dask", "export_on_dask",
           "host_share", "shard_label"]

SHARD_REPOS: Final = 250      # repositories per task: seconds to minutes of work, results of
                              # a few MB, few enough tasks for the scheduler at network scale
MAX_HOST_SHARDS: Final = 4    # shards of one host in flight at once (each with 1/L its limits)
SHARD_RETRIES: Final = 3      # times a shard runs again after its worker was lost or it failed
NAMES: Final = "names"        # the group of targets whose host is unknown until resolved


@dataclasses.dataclass(frozen=True)
class _Shared:
    """What every shard of one run needs, scattered once to the workers (never in a task)."""

    config: ClientConfig
    exclude: frozenset[str]
    collections: tuple[str, ...] | None
    batch_repos: int
    batch_records: int


def host_share(config: ClientConfig, *, workers: int) -> tuple[int, ClientConfig]:
    """Return ``L``, the shards of one host in flight at once, and a worker's settings.

    The worker settings are the caller's with ``1/L`` of ``max_per_host`` (so ``L`` shards
    of one host together stay within its slots) and ``1/max(L, workers)`` of ``rate_limit``:
    every worker process has one client, whose rate holds per origin, so a server every
    shard asks (the PLC directory, a handle resolver) gets at most the caller's rate from
    all ``workers`` together, as does each host from its ``L`` shards. No ``cache_dir``
    (each worker's own default) and no progress bars.
    """
    shards = min(MAX_HOST_SHARDS, config.max_per_host)
    rate = config.rate_limit
    if rate is not None:
        shards = max(1, min(shards, rate.requests // 2))   # a RateLimit needs 2 requests
        rate = _rate_share(rate, max(shards, workers))
    worker = dataclasses.replace(config, max_per_host=config.max_per_host // shards,
                                 rate_limit=rate, cache_dir=None, progress=False)
    return shards, worker


def _rate_share(rate: RateLimit, parts: int) -> RateLimit:
    """``1/parts`` of ``rate``: a window's requests divided, or the window stretched when
    too few would be left (a RateLimit needs 2 requests)."""
    requests = rate.requests // parts
    if requests >= 2:
        return RateLimit(requests=requests, per=rate.per,
                         burst=max(1, min(rate.capacity // parts, requests - 1)))
    return RateLimit(requests=2, per=rate.per * 2 * parts / rate.requests, burst=1)


def shard_label(host: str | None) -> str:
    """The host part of a task key: ``hostname[:port]`` (never userinfo), or ``names``."""
    if host is None:
        return NAMES
    parts = urlsplit(host)
    if not parts.hostname:
        return NAMES
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


def _groups(work: Sequence[Target]) -> dict[str, list[Target]]:
    """The planned targets by host label, each group in the plan's (DID) order."""
    groups: dict[str, list[Target]] = {}
    for target in work:
        groups.setdefault(shard_label(target.host), []).append(target)
    return groups


def _shards(dataset: DatasetExport, label: str, targets: list[Target], size: int,
            run: str) -> Iterator[Shard]:
    """One host's shards: contiguous ranges of ``size`` targets, made as they are asked for.

    The targets travel without their host: the worker resolves each repository's PDS, and
    a host URL from a source frame may hold userinfo.
    """
    for n, start in enumerate(range(0, len(targets), size)):
        part = [dataclasses.replace(t, host=None) for t in targets[start:start + size]]
        yield dataset.shard(f"atrepo-export-{label}-{n}-{run}", part)


def _distributed() -> Any:
    """The ``distributed`` package (only imported for an export given ``dask=``)."""
    try:
        import distributed
    except ImportError as exc:
        msg = "dask= needs the distributed package"
        raise UsageError(msg, argument="dask",
                         hint="pip install 'atrepo[dask]'") from exc
    return distributed


def check_dask(dask: object, shard_repos: object = SHARD_REPOS) -> None:
    """Refuse a ``dask=`` that is not a synchronous ``distributed.Client``, and a
    ``shard_repos`` that is not a whole number of at least 1.

    The export checks them before it opens the dataset or lists a host.

    Raises:
        UsageError: something else, or a client made with ``asynchronous=True`` (the
            driver waits on results in a thread of its own); a bad ``shard_repos``.
    """
    distributed = _distributed()
    if not isinstance(dask, distributed.Client):
        raise UsageError("dask= takes a distributed.Client", argument="dask",
                         type=type(dask).__name__,
                         hint="e.g. distributed.Client(cluster) or distributed.Client(address)")
    if dask.asynchronous:
        raise UsageError("dask= takes a synchronous distributed.Client", argument="dask",
                         hint="make it without asynchronous=True; AsyncClient.export runs "
                              "the driver in a thread")
    if isinstance(shard_repos, bool) or not isinstance(shard_repos, int) or shard_repos < 1:
        raise UsageError("shard_repos must be a whole number of at least 1",
                         argument="shard_repos", value=repr(shard_repos)[:40])


def export_on_dask(dask: Any, dataset: DatasetExport, targets: Sequence[Target], *,
                   config: ClientConfig, collections: Sequence[str] | None,
                   shard_repos: int = SHARD_REPOS) -> ExportReport:
    """Run an export's visits on the cluster of ``dask`` (see the module docstring).

    Args:
        dask: a synchronous ``distributed.Client`` (checked with ``shard_repos`` by
            :func:`check_dask` before the dataset was opened).
        dataset: the export's dataset side (opened and locked by the caller, who closes it).
        targets: what the source names.
        config: the caller's client settings (they travel as data, shared per host).
        collections: the export's collections filter.
        shard_repos: repositories per task.

    Returns:
        The export's report, after the last commit.

    Raises:
        Exception: whatever a shard raised past its retries (a bug, not a repository's
            failure: those are in the report's errors); shards in flight are cancelled.
    """
    distributed = _distributed()
    per_host, worker_config = host_share(config, workers=len(dask.nthreads()))
    repos, records = dataset.bounds
    shared = dask.scatter(_Shared(worker_config, frozenset(dataset.exclude),
                                  None if collections is None else tuple(collections),
                                  repos, records), broadcast=True, hash=False)
    work = dataset.plan(targets)
    run = uuid.uuid4().hex[:8]
    flight = _Flight(dask, shared, {label: _shards(dataset, label, group, shard_repos, run)
                                    for label, group in _groups(work).items()},
                     per_host=per_host, window=max(1, 2 * sum(dask.nthreads().values())))
    done = distributed.as_completed()
    try:
        with progress(len(work), "exporting", config.progress, unit="repo") as bar:
            flight.fill(done.add)
            for future in done:
                count = flight.landed(future.key)
                result = future.result()
                future.release()
                dataset.merge(result)
                bar.update(count)
                flight.fill(done.add)
    finally:
        flight.cancel()   # after an exception: nothing more will be merged
        shared.release()
    return dataset.finish()


class _Flight:
    """The shards of one run, waiting (per host, made when submitted) and in flight.

    Hosts are taken in turn, at most ``per_host`` shards of one host and ``window`` in all
    in flight.
    """

    def __init__(self, dask: Any, shared: Any, waiting: dict[str, Iterator[Shard]], *,
                 per_host: int, window: int) -> None:
        self._dask = dask
        self._shared = shared
        self._waiting = waiting
        self._per_host = per_host
        self._window = window
        self._busy = dict.fromkeys(waiting, 0)
        self._running: dict[str, tuple[Any, str, int]] = {}  # key -> future, host, repos

    def fill(self, track: Callable[[Any], None]) -> None:
        """Submit shards up to the bounds, handing each future to ``track``."""
        moved = True
        while moved and len(self._running) < self._window:
            moved = False
            for label in list(self._waiting):
                if len(self._running) >= self._window:
                    break
                if self._busy[label] < self._per_host:
                    moved = self._submit(label, track) or moved

    def _submit(self, label: str, track: Callable[[Any], None]) -> bool:
        """Submit ``label``'s next shard; False when it has none left."""
        shard = next(self._waiting[label], None)
        if shard is None:
            del self._waiting[label]
            return False
        future = self._dask.submit(_run_shard, self._shared, shard, key=shard.id,
                                   retries=SHARD_RETRIES, pure=False)
        track(future)
        self._running[shard.id] = (future, label, len(shard.targets))
        self._busy[label] += 1
        return True

    def landed(self, key: str) -> int:
        """Free the slot of the shard ``key`` (its result is in); return its repositories."""
        _, label, count = self._running.pop(key)
        self._busy[label] -= 1
        return count

    def cancel(self) -> None:
        """Cancel the shards still in flight."""
        if self._running:
            self._dask.cancel([future for future, _, _ in self._running.values()])
            self._running.clear()


# -- on a worker ------------------------------------------------------------------------------

_CLIENTS: dict[ClientConfig, Client] = {}   # one client per settings per worker process
_CLIENTS_LOCK = threading.Lock()


def _worker_client(config: ClientConfig) -> Client:
    """The worker process's client for ``config``, made on first use and kept.

    Kept for the life of the worker process, and closed when it exits: its connections,
    identity cache and store serve every later shard of the same settings.
    """
    from .client import Client

    with _CLIENTS_LOCK:
        made = _CLIENTS.get(config)
        if made is None:
            options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            options["handle_resolver"] = config.handle_resolver or ""  # none: not $ATREPO_...
            made = _CLIENTS[config] = Client(**options)
            atexit.register(made.close)
        return made


def _run_shard(shared: _Shared, shard: Shard) -> ShardResult:
    """A task: visit the shard's targets with the worker's client; return its result."""
    client = _worker_client(shared.config)
    export = ShardExport(shard, exclude=shared.exclude, batch_repos=shared.batch_repos,
                         batch_records=shared.batch_records)
    client._each(ExportRun(client._pipeline, export, shard.targets, shared.collections))
    return export.result()
