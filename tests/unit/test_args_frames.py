"""Frames as the source of a bulk call (atrepo._args.framed_names), and list_plc's ``after``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from atrepo._args import check_after, check_names, check_source, framed_names
from atrepo.errors import UsageError

A, B, C = ("did:plc:" + ch * 24 for ch in "abc")


def test_a_frame_names_its_dids_once_in_order():
    frame = pl.DataFrame({"did": [B, A, B, C], "head": ["h1", "h2", "h3", "h4"]})
    listed = framed_names(frame, argument="x")
    assert listed is not None
    assert listed.names == [B, A, C] and listed.hosts == [None, None, None]
    assert check_names(frame, argument="x") == [B, A, C]
    assert check_source(frame.lazy()) == [B, A, C]


@pytest.mark.parametrize("column", ["host", "pds"])
def test_a_host_or_pds_column_says_where_each_was_listed(column):
    frame = pl.LazyFrame({"did": [A, B, A], column: ["https://one", None, "https://two"]})
    listed = framed_names(frame, argument="x")
    assert listed is not None
    assert listed.names == [A, B] and listed.hosts == ["https://one", None]


def test_host_wins_over_pds():
    frame = pl.DataFrame({"did": [A], "pds": ["https://current"], "host": ["https://lister"]})
    listed = framed_names(frame, argument="x")
    assert listed is not None and listed.hosts == ["https://lister"]


def test_an_empty_frame_names_nothing():
    listed = framed_names(pl.DataFrame(schema={"did": pl.String}), argument="x")
    assert listed is not None and listed.names == [] and listed.hosts == []


def test_anything_else_is_not_a_frame():
    assert framed_names([A], argument="x") is None
    assert framed_names(pl.Series("did", [A]), argument="x") is None
    assert check_names(pl.Series("did", [A]), argument="x") == [A]   # an iterable of str


@pytest.mark.parametrize(("frame", "message"), [
    (pl.DataFrame({"DID": [A]}), "needs a did column"),
    (pl.DataFrame({"did": [1]}), "must hold strings"),
    (pl.DataFrame({"did": [A, None]}), "holds a null"),
    (pl.LazyFrame({"repo": [A]}), "needs a did column"),
])
def test_a_frame_without_usable_dids_is_refused(frame, message):
    with pytest.raises(UsageError, match=message) as info:
        check_names(frame, argument="dids_or_handles")
    assert info.value.fields["argument"] == "dids_or_handles"


def test_a_null_is_named_by_its_row():
    with pytest.raises(UsageError) as info:
        framed_names(pl.DataFrame({"did": [A, B, None]}), argument="x")
    assert info.value.fields["row"] == 2


@pytest.mark.parametrize(("after", "expected"), [
    (None, None),
    ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z"),
    ("2024-01-01T02:00:00.123456+02:00", "2024-01-01T00:00:00.123Z"),
    (datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "2024-01-01T00:00:00.000Z"),
])
def test_after_is_written_as_the_plc_writes_times(after, expected):
    assert check_after(after) == expected


@pytest.mark.parametrize("after", ["2024-01-01T00:00:00", datetime(2024, 1, 1), "yesterday",
                                   1704067200, b"2024-01-01T00:00:00Z"])
def test_after_without_a_zone_or_of_another_type_is_refused(after):
    with pytest.raises(UsageError, match="time zone") as info:
        check_after(after)
    assert info.value.fields["argument"] == "after"


def test_a_list_repos_frame_carries_what_its_host_lists_of_each():
    from atrepo.frames import repos_frame

    frame = repos_frame([(A, "bafyhead", "3rev", True, None),
                         (B, None, None, False, "takendown"),
                         (C, None, None, False, None)])
    listed = framed_names(frame, argument="x")
    assert listed is not None
    assert (listed.heads, listed.revs) == (["bafyhead", None, None], ["3rev", None, None])
    assert listed.inactive == [None, "takendown", "inactive"]
    plain = framed_names(pl.DataFrame({"did": [A], "status": ["tombstoned"]}), argument="x")
    assert plain is not None
    assert (plain.heads, plain.revs, plain.inactive) == ([None], [None], [None])
