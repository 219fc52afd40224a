"""Digest of an atrepo ``records`` frame, computed with polars (no per-row Python)."""
from __future__ import annotations

import hashlib

import polars as pl

from _common import report


def report_frame(df: pl.DataFrame) -> None:
    lines = (df.select(pl.concat_str([pl.col("collection"), pl.lit("/"), pl.col("rkey"),
                                       pl.lit(" "), pl.col("cid")]).alias("line"))
             .get_column("line").sort())
    text = lines.str.join("\n").item() if len(lines) else ""
    dig = hashlib.sha256(text.encode()).hexdigest()
    decoded = df.height - df.get_column("record").null_count()
    report(df.height, dig, decoded)
