"""atrepo._listing: the listRepos pager (limits, cursor files, stopping) and its frame.

Pages are handed to the pager by hand, as a client's driver would hand them over.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atrepo import AtrepoError
from atrepo._config import ClientConfig
from atrepo._flows.effects import HttpGet
from atrepo.retry import RetryPolicy
from atrepo._listing import Pager, pager
from atrepo.frames import REPOS_SCHEMA
from atrepo.repos import RepoRef

HOST = "http://127.0.0.1:2583"


def _refs(*numbers: int) -> list[RepoRef]:
    return [RepoRef(did=f"did:plc:{n:024d}", head=f"bafy{n}", rev=f"3k{n}", active=True)
            for n in numbers]


def _pager(tmp_path: Path, *, limit: int | None = None, resume: bool = False) -> Pager:
    return Pager(HOST, limit=limit, resume=resume, state_dir=tmp_path / "cursors",
                 policy=RetryPolicy(), progress_bar=False)


def test_pages_are_taken_until_no_cursor_comes(tmp_path):
    listing = _pager(tmp_path)
    assert listing.take((_refs(1, 2), "c1")) == _refs(1, 2) and not listing.exhausted
    assert listing.cursor == "c1"
    assert listing.take((_refs(3), None)) == _refs(3) and listing.exhausted
    assert listing.count == 3


def test_the_first_request_asks_for_a_page_and_no_cursor(tmp_path):
    effect = next(_pager(tmp_path, limit=5).flow())
    assert isinstance(effect, HttpGet)
    assert effect.url.startswith(f"{HOST}/xrpc/com.atproto.sync.listRepos?")
    assert "limit=5" in effect.url and "cursor" not in effect.url


def test_limit_cuts_the_page_and_ends_the_listing(tmp_path):
    listing = _pager(tmp_path, limit=3)
    assert listing.take((_refs(1, 2), "c1")) == _refs(1, 2) and not listing.exhausted
    assert listing.take((_refs(3, 4, 5), "c2")) == _refs(3) and listing.exhausted
    assert _pager(tmp_path, limit=0).exhausted   # nothing asked for: nothing to do


def test_a_cursor_that_does_not_advance_stops_with_a_warning(tmp_path):
    listing = _pager(tmp_path)
    listing.take((_refs(1), "c1"))
    with pytest.warns(UserWarning, match="cursor did not advance"):
        listing.take((_refs(2), "c1"))
    assert listing.exhausted


def test_resume_starts_from_the_saved_cursor(tmp_path):
    first = _pager(tmp_path, limit=1, resume=True)
    first.take((_refs(1), "c1"))
    saved = json.loads(next((tmp_path / "cursors").glob("*.json")).read_text())
    assert saved == {"host": HOST, "cursor": "c1"}
    assert _pager(tmp_path, resume=True).cursor == "c1"
    assert _pager(tmp_path).cursor is None               # without resume: from the start
    (next((tmp_path / "cursors").glob("*.json"))).write_text("{cut")
    assert _pager(tmp_path, resume=True).cursor is None  # an unreadable file: from the start


def test_collecting_builds_the_list_repos_frame(tmp_path):
    listing = _pager(tmp_path)
    with listing.collecting():
        listing.take((_refs(2, 1), "c1"))
        listing.take(([RepoRef(did="did:plc:" + "9" * 24, active=False, status="takendown")],
                      None))
    frame = listing.frame()
    assert frame.schema == REPOS_SCHEMA
    assert frame.rows() == [(f"did:plc:{2:024d}", "bafy2", "3k2", True, None),
                            (f"did:plc:{1:024d}", "bafy1", "3k1", True, None),
                            ("did:plc:" + "9" * 24, None, None, False, "takendown")]
    assert _pager(tmp_path).frame().schema == REPOS_SCHEMA   # nothing collected: empty


@pytest.mark.parametrize("host", ["bsky.network", "localhost:2583", "ftp://host"])
def test_a_host_must_be_a_url(host, tmp_path):
    with pytest.raises(AtrepoError, match="host must be a URL") as info:
        pager(host, ClientConfig(cache_dir=tmp_path), limit=None, resume=False)
    assert info.value.fields["host"] == host


@pytest.mark.parametrize("host", ["https://" + "h" * 300 + ".example/xrpc",
                                  "https://Relay.Example", "https://relay.example"])
def test_cursor_files_of_long_and_case_differing_hosts(host, tmp_path):
    listing = Pager(host, limit=1, resume=True, state_dir=tmp_path / "cursors",
                    policy=RetryPolicy(), progress_bar=False)
    listing.take((_refs(1), "c1"))                  # ENAMETOOLONG before, for the long one
    others = [h for h in ("https://Relay.Example", "https://relay.example") if h != host]
    for other in others:
        Pager(other, limit=1, resume=True, state_dir=tmp_path / "cursors",
              policy=RetryPolicy(), progress_bar=False).take((_refs(2), "c2"))
    names = [p.name.casefold() for p in (tmp_path / "cursors").iterdir()]
    assert len(set(names)) == len(names) == 1 + len(others)
    again = Pager(host, limit=None, resume=True, state_dir=tmp_path / "cursors",
                  policy=RetryPolicy(), progress_bar=False)
    assert again.cursor == "c1"


def test_a_cursor_saved_under_an_earlier_name_still_resumes(tmp_path):
    host = "https://Relay.Example/xrpc"          # named "Relay.Example_xrpc.json" before
    folder = tmp_path / "cursors"
    folder.mkdir()
    (folder / "Relay.Example_xrpc.json").write_text(json.dumps({"host": host, "cursor": "c7"}))
    resumed = Pager(host, limit=None, resume=True, state_dir=folder, policy=RetryPolicy(),
                    progress_bar=False)
    assert resumed.cursor == "c7"
    other = Pager("https://Relay.Example_xrpc", limit=None, resume=True, state_dir=folder,
                  policy=RetryPolicy(), progress_bar=False)
    assert other.cursor is None                  # the same earlier name, another host
