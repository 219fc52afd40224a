"""atrepo._names.file_name: bounded file names, one per identifier even when case is folded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atrepo._names import MAX_NAME, file_name

NSID_317 = ".".join(["a" * 63] * 4) + ".x" * 32 + ".app" + "X" * 60


@pytest.mark.parametrize("identifier", [
    "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "bsky.network", "localhost:2583", "app.bsky.feed.post",
])
def test_plain_identifiers_keep_their_readable_names(identifier):
    assert file_name(identifier) == identifier.replace(":", "_")


@pytest.mark.parametrize("identifier", [
    NSID_317, "h" * 2000 + ".example/xrpc", "did:web:" + "a" * 400 + ".example",
    "did:web:localhost%3A2583", "App.X", "..", ".hidden", "a/../../b", "é" * 300, "-x",
])
def test_every_name_is_bounded_and_safe(identifier, tmp_path):
    name = file_name(identifier)
    assert len(name) <= MAX_NAME and not name.startswith(".")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-~")
    (tmp_path / (name + ".json")).write_text("{}")   # ENAMETOOLONG before the fix
    assert os.listdir(tmp_path) == [name + ".json"]


def test_names_differ_where_a_case_insensitive_file_system_folds_them():
    names = [file_name(i) for i in ("app.x", "App.X", "APP.X", "did:web:Example.com",
                                    "did:web:example.com", "did_web_example.com",
                                    NSID_317, NSID_317.lower())]
    assert len({name.casefold() for name in names}) == len(names)


def test_a_hashed_name_cannot_be_a_plain_one():
    # a plain identifier never holds "~", so it cannot take a hashed name's place
    hashed = file_name("App.X")
    assert "~" in hashed and file_name(hashed.replace("~", "-")) != hashed


def test_long_names_in_one_directory(tmp_path: Path):
    for n in range(3):
        (tmp_path / file_name(NSID_317 + str(n))).mkdir()
    assert len(list(tmp_path.iterdir())) == 3
