"""Run the atproto data-model interop vectors against atrepo.cbor and atrepo.datamodel.

The vectors are ``data-model/data-model-fixtures.json`` of the public atproto interop tests
(bluesky-social/atproto-interop-tests), read from :data:`INTEROP_DIR`
(``tests/_interop.py``). Each entry holds a JSON data-model value, its DAG-CBOR
encoding (base64, unpadded) and the CID of those bytes. Every entry is checked four ways:

* strict decode of the bytes, converted to JSON, equals the JSON;
* the JSON, parsed and encoded, equals the bytes (canonical encoding);
* the CID of the bytes equals the CID;
* the record hot path (``record_json``) on the bytes yields the JSON.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from atrepo import cbor, datamodel
from atrepo.cid import CID, cid_for
from _interop import INTEROP_DIR

FIXTURES = INTEROP_DIR / "data-model" / "data-model-fixtures.json"


def _load() -> list[dict[str, Any]]:
    if not FIXTURES.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return entries


ENTRIES = _load()


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _ids(entry: dict[str, Any]) -> str:
    return str(entry["cid"])[-10:]


def test_fixture_file_present() -> None:
    assert FIXTURES.is_file(), f"data-model fixtures not found at {FIXTURES}"
    assert len(ENTRIES) >= 3, "expected the data-model fixture file to hold several entries"
    for entry in ENTRIES:
        assert {"json", "cbor_base64", "cid"} <= entry.keys()


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_decode_then_to_json(entry: dict[str, Any]) -> None:
    data = _b64(entry["cbor_base64"])
    value = cbor.decode(data)
    assert datamodel.to_json(value) == entry["json"]


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_from_json_then_encode(entry: dict[str, Any]) -> None:
    data = _b64(entry["cbor_base64"])
    assert cbor.encode(datamodel.from_json(entry["json"])) == data


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_cid_of_bytes(entry: dict[str, Any]) -> None:
    data = _b64(entry["cbor_base64"])
    cid = cid_for(data)
    assert str(cid) == entry["cid"]
    # the string form parses back to the same CID, through the fast path and multiformats
    assert CID.decode(entry["cid"]) == cid
    assert bytes(CID.decode(entry["cid"])) == bytes(cid)


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_record_json(entry: dict[str, Any]) -> None:
    data = _b64(entry["cbor_base64"])
    assert json.loads(datamodel.record_json(data)) == entry["json"]


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_strict_and_json_paths_agree(entry: dict[str, Any]) -> None:
    """decode -> encode is the identity on the vector bytes, and from_json(to_json) too."""
    data = _b64(entry["cbor_base64"])
    value = cbor.decode(data)
    assert cbor.encode(value) == data
    assert datamodel.from_json(datamodel.to_json(value)) == value
    # decode_fast sees the same structure (links as raw bytes instead of CID objects)
    assert datamodel.to_json(cbor.decode_fast(data)) == entry["json"]
