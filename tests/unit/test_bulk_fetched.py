"""FetchRun.fetched (``client.last_fetched``): where each repository was listed and fetched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import atrepo
from atrepo._bulk import FetchRun
from atrepo._config import ClientConfig
from atrepo._flows.effects import HttpGet, HttpResponse
from atrepo._pipeline import Pipeline
from atrepo.frames import FETCHED_SCHEMA
from atrepo.testing import make_repo_car

ALICE, BOB = "did:plc:" + "a" * 24, "did:plc:" + "b" * 24
KEY = "did:key:zQ3shnVy33XYAf28jGue1iwLyN3dbufGXCayS9n9QPAdeU9ie"


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(ClientConfig(cache_dir=tmp_path / "cache", progress=False,
                                 plc_url="https://plc.test"))
    yield made
    made.close()


def _doc(did: str, pds: str) -> HttpResponse:
    doc = {"id": did, "alsoKnownAs": [], "verificationMethod": [
        {"id": f"{did}#atproto", "type": "Multikey", "controller": did,
         "publicKeyMultibase": KEY.removeprefix("did:key:")}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": pds}]}
    return HttpResponse(200, body=json.dumps(doc).encode())


def test_the_pds_a_flow_resolved_is_its_row_whatever_listed_it(pipeline):
    run = FetchRun(pipeline, [ALICE, BOB, "nobody.test"], None,
                   listed=["https://old", "https://two", None])
    flow = run.flow(0)
    effect = next(flow)
    assert isinstance(effect, HttpGet) and effect.url == f"https://plc.test/{ALICE}"
    effect = flow.send(_doc(ALICE, "https://new"))
    assert effect.url.startswith("https://new/xrpc/com.atproto.sync.getRepo?")  # not https://old
    flow.close()
    car, _ = make_repo_car({f"app.x.thing/{i}": {"i": i} for i in range(3)}, did=ALICE)
    run.record(0, atrepo.read_car(car))
    run.record(1, atrepo.RepoUnavailable("repository takendown", did=BOB, status="takendown"))
    run.record(2, atrepo.ResolutionError("handle does not resolve", identifier="nobody.test"))
    fetched = run.fetched()
    assert fetched.schema == FETCHED_SCHEMA
    rows = fetched.rows()
    assert rows[0][:6] == (ALICE, "https://old", "https://new", atrepo.read_car(car).rev, 3,
                           "file")
    assert rows[0][6] is None
    assert rows[1][:3] == (BOB, "https://two", None) and rows[1][6].startswith(
        "RepoUnavailable: repository takendown")
    assert rows[2][:3] == ("nobody.test", None, None) and rows[2][4] is None
