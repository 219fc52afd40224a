"""A PDS in miniature for sparse fetches driven by hand: getRecord, getBlocks, getLatestCommit
(and getRepo, the whole CAR, for the fetches that fall back to it).

It answers from one repository's blocks the way the reference PDS does: a getRecord proof is
the commit, the MST nodes from the root to the key and the record when it exists; getBlocks
answers 400 ``InvalidRequest`` "Could not find cids: ..." when it lacks one. ``omit`` leaves
blocks out of status-200 answers instead (a broken host), and ``heads`` replaces the
repository after so many requests (a write between two rounds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from atrepo import mst
from atrepo.car import read_car
from atrepo.cid import CID
from atrepo._flows.effects import Flow, Gather, HttpDownload, HttpGet, HttpResponse, Sleep
from atrepo.models import parse_commit
from atrepo.testing import encode_car

__all__ = ["Repo", "SparseHost", "repo_of", "run"]

T = TypeVar("T")
CAR = {"content-type": "application/vnd.ipld.car"}


@dataclass
class Repo:
    """One repository's commit (binary CID) and blocks (binary CID -> bytes)."""

    commit: bytes
    blocks: dict[bytes, bytes]

    @property
    def root(self) -> bytes:
        commit, _ = parse_commit(self.blocks[self.commit])
        return bytes(CID.decode(commit.data))


def repo_of(car_bytes: bytes) -> Repo:
    """The :class:`Repo` of a repository CAR."""
    car = read_car(car_bytes)
    return Repo(bytes(car.roots[0]), {bytes(cid): data for cid, data in car})


@dataclass
class SparseHost:
    """Answers a sparse fetch's requests from ``repo`` (see the module docstring)."""

    repo: Repo
    omit: set[bytes] = field(default_factory=set)
    no_proof: bool = False
    heads: list[tuple[int, Repo]] = field(default_factory=list)  # (after n requests, repo)
    answer_for: Callable[[str], HttpResponse | None] = lambda method: None
    requests: list[str] = field(default_factory=list)
    sent: int = 0  # the body bytes of every status-200 CAR answer

    def answer(self, effect: Any) -> HttpResponse:
        response = self._answer(effect)
        if response.ok and response.headers.get("content-type") == CAR["content-type"]:
            self.sent += len(response.body)
        return response

    def _answer(self, effect: Any) -> HttpResponse:
        url = urlsplit(effect.url)
        if isinstance(effect, HttpDownload):  # getRepo: the whole CAR, whatever ``since``
            assert url.path.endswith("com.atproto.sync.getRepo"), effect
            self.requests.append(effect.url)
            with open(effect.path, "wb") as out:
                out.write(encode_car([CID.from_raw(self.repo.commit)],
                                     list(self.repo.blocks.items())))
            return HttpResponse(200)
        assert isinstance(effect, HttpGet), effect
        method = url.path.rsplit("/", 1)[-1]
        self.requests.append(effect.url)
        while self.heads and len(self.requests) > self.heads[0][0]:
            self.repo = self.heads.pop(0)[1]
        query = parse_qs(url.query)
        special = self.answer_for(method)
        if special is not None:
            return special
        if method == "com.atproto.sync.getLatestCommit":
            commit, _ = parse_commit(self.repo.blocks[self.repo.commit])
            body = {"cid": str(CID.from_raw(self.repo.commit)), "rev": commit.rev}
            return HttpResponse(200, body=json.dumps(body).encode())
        if method == "com.atproto.sync.getRecord":
            if self.no_proof:
                return _error(404, "RecordNotFound", "Could not locate record")
            key = f"{query['collection'][0]}/{query['rkey'][0]}"
            return HttpResponse(200, CAR, encode_car([CID.from_raw(self.repo.commit)],
                                                     self._proof(key)))
        if method == "com.atproto.sync.getBlocks":
            cids = [bytes(CID.decode(c)) for c in query["cids"]]
            absent = [c for c in cids if c not in self.repo.blocks]
            if absent:
                return _error(400, "InvalidRequest", "Could not find cids: " + ",".join(
                    str(CID.from_raw(c)) for c in absent))
            return HttpResponse(200, CAR, encode_car(
                [], [(c, self.repo.blocks[c]) for c in cids if c not in self.omit]))
        raise AssertionError(f"unexpected request {effect.url}")

    def _proof(self, key: str) -> list[tuple[bytes, bytes]]:
        """The commit, the nodes a walk to ``key`` reads, and its record if present."""
        read: list[bytes] = []

        def fetch(raw: bytes) -> bytes | None:
            read.append(raw)
            return self.repo.blocks.get(raw)

        leaves = mst.collect(fetch, self.repo.root, [(key, key + "\x00")])[1]
        return [(raw, self.repo.blocks[raw])
                for raw in [self.repo.commit, *read, *leaves] if raw not in self.omit]

    def calls(self, method: str) -> int:
        """How many requests asked for ``method``."""
        return sum(f"/xrpc/{method}?" in url for url in self.requests)


def _error(status: int, name: str, message: str) -> HttpResponse:
    return HttpResponse(status, body=json.dumps({"error": name, "message": message}).encode())


def run(flow: Flow[T], host: SparseHost) -> T:
    """Drive ``flow`` against ``host`` to its end (sleeps are not waited for; the flows of
    a Gather run one after another, the first failure thrown in as a driver throws it)."""
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, Gather):
                try:
                    values = tuple(run(each, host) for each in effect.flows)
                except Exception as failed:
                    effect = flow.throw(failed)
                    continue
                effect = flow.send(values)
                continue
            effect = flow.send(None if isinstance(effect, Sleep) else host.answer(effect))
    except StopIteration as done:
        value: T = done.value
        return value
