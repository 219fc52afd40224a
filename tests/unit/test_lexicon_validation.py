"""validate_record agrees with the reference validator on every generated record.

``atrepo/_reference/gen_records.mjs`` generates records of every record type in the pinned
lexicons, valid ones and deliberately broken ones (dropped or wrongly typed fields, bad
formats, over-long strings, unknown union members, ...), with a fixed seed, and labels each
with ``@atproto/lexicon``'s ``assertValidRecord``. Our verdict must be the same on each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import atrepo

REFERENCE = Path(__file__).resolve().parents[2] / "atrepo" / "_reference"
COUNT = 12_000


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (REFERENCE / "node_modules" / "@atproto" / "lexicon").exists():
        pytest.fail("the reference implementation is not installed: run `make test`")
    out = tmp_path_factory.mktemp("lexicon") / "records.jsonl"
    with out.open("wb") as sink:
        subprocess.run([node, "gen_records.mjs", "--count", str(COUNT), "--seed", "lexicon"],
                       cwd=REFERENCE, stdout=sink, check=True, timeout=300)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_the_generated_set_is_broad(labelled: list[dict[str, Any]]) -> None:
    verdicts = Counter(row["valid"] for row in labelled)
    assert len(labelled) == COUNT
    assert verdicts[True] >= 3000 and verdicts[False] >= 3000
    types = {row["record"].get("$type") for row in labelled if row["valid"]}
    assert set(atrepo.lexicon.record_types()) <= types


def test_verdicts_agree_with_the_reference(labelled: list[dict[str, Any]]) -> None:
    disagreements = []
    for row in labelled:
        problems = atrepo.validate_record(row["record"])
        if (not problems) != row["valid"]:
            disagreements.append((row["mutation"], row["error"], problems, row["record"]))
    assert not disagreements, (f"{len(disagreements)} disagreements, e.g.\n"
                               + "\n".join(map(repr, disagreements[:5])))


CLUSTERS = ["👨‍👩‍👧‍👦", "🇫🇷", "e\u0301\u0302", "👍🏽", "각", "क्षि", "नमस्ते", "\r\n", "🏳️‍🌈",
            "1️⃣", "ก่", "aำ", "ক্ষ", "\u0600a", "🧑🏽‍💻", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "ᄀᄀᄀ", "நி", "a\u200d",
            "\u200d😀", "x\ufe0f", "é", "データ", "\x00\u0301", "abc"]


def test_grapheme_counts_agree_with_intl_segmenter() -> None:
    from atrepo.lexicon._strings import grapheme_len

    node = shutil.which("node")
    assert node is not None
    texts = [a + b for a in CLUSTERS for b in CLUSTERS]
    script = ("const seg = new Intl.Segmenter(); const texts = JSON.parse(require('fs')"
              ".readFileSync(0, 'utf8')); console.log(JSON.stringify(texts.map("
              "(t) => [...seg.segment(t)].length)))")
    done = subprocess.run([node, "-e", script], input=json.dumps(texts), capture_output=True,
                          text=True, check=True, timeout=60)
    reference = json.loads(done.stdout)
    assert [grapheme_len(t) for t in texts] == reference
