"""atrepo._args: the public calls' argument checks, each naming the argument it refuses."""

from __future__ import annotations

import pytest

from atrepo import AtrepoError, UsageError
from atrepo._args import (
    check_collection,
    check_collections,
    check_flag,
    check_host,
    check_limit,
    check_names,
    check_out_dir,
    check_source,
)


def test_a_string_is_one_name_not_its_characters():
    assert check_names("alice.test", argument="names") == ["alice.test"]
    assert check_names(iter(["a.test", "b.test"]), argument="names") == ["a.test", "b.test"]
    assert check_collections("app.bsky.feed.post") == ["app.bsky.feed.post"]
    assert check_collections(None) is None


@pytest.mark.parametrize("names", [5, b"alice.test", ["alice.test", 7], None])
def test_names_that_are_not_strings_are_refused(names):
    with pytest.raises(UsageError) as info:
        check_names(names, argument="dids_or_handles")
    assert info.value.argument == "dids_or_handles" and "dids_or_handles" in str(info.value)


def test_a_usage_error_is_an_atrepo_error_and_a_value_error():
    with pytest.raises(UsageError) as info:
        check_limit("10")
    assert isinstance(info.value, AtrepoError) and isinstance(info.value, ValueError)
    assert "argument=limit" in str(info.value) and "'10'" in str(info.value)


@pytest.mark.parametrize("limit", ["10", 1.5, True, -1, [1]])
def test_a_limit_is_a_whole_number_or_none(limit):
    with pytest.raises(UsageError, match="argument=limit"):
        check_limit(limit)


@pytest.mark.parametrize("limit", [None, 0, 10])
def test_good_limits_pass(limit):
    assert check_limit(limit) == limit


def test_a_flag_is_a_bool():
    assert check_flag(True, argument="resume") is True
    with pytest.raises(UsageError, match="argument=resume"):
        check_flag("no", argument="resume")


def test_a_host_is_an_http_url():
    assert check_host("https://bsky.network/") == "https://bsky.network"
    for bad in ("bsky.network", "ftp://x", "http://", 42):
        with pytest.raises(UsageError, match="host must be a URL") as info:
            check_host(bad)
        assert info.value.argument == "host"


def test_a_host_without_its_scheme_gets_the_url_it_meant():
    with pytest.raises(UsageError, match="host must be a URL") as info:
        check_host("localhost:45315")
    assert "http://localhost:45315" in str(info.value)


def test_an_export_source_is_names_or_a_host_url():
    assert check_source("alice.test") == ["alice.test"]
    assert check_source("did:plc:abcdefghijklmnopqrstuvwx") == ["did:plc:abcdefghijklmnopqrstuvwx"]
    assert check_source("at://alice.test") == ["at://alice.test"]
    assert check_source(["a.test", "b.test"]) == ["a.test", "b.test"]
    assert check_source("http://127.0.0.1:2583/") == "http://127.0.0.1:2583"
    for host in ("localhost:45315", "127.0.0.1:2583", "ftp://host"):
        with pytest.raises(UsageError, match="host must be a URL") as info:
            check_source(host, argument="source")
        assert info.value.argument == "source"


def test_out_dir_may_be_missing_or_a_directory_but_not_a_file(tmp_path):
    assert check_out_dir(tmp_path) == tmp_path
    assert check_out_dir(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(UsageError, match="is a file") as info:
            check_out_dir(path)
        assert info.value.argument == "out_dir" and str(tmp_path / "file") in str(info.value)
    with pytest.raises(UsageError, match="must be a path"):
        check_out_dir(3)


def test_a_collection_is_one_nsid():
    assert check_collection("app.bsky.feed.post") == "app.bsky.feed.post"
    for bad in (["app.bsky.feed.post"], "not an nsid", None):
        with pytest.raises(UsageError, match="expected a collection NSID") as info:
            check_collection(bad)
        assert info.value.argument == "collection"
