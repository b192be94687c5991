"""Marts of ``kind: rebuild`` (e.g. ``retention_cohorts``): rebuilt whole from other gold marts."""

from __future__ import annotations

import hashlib

import duckdb

from warehouse.gold import GoldWatermark, gold_watermark, set_gold_watermark, transaction
from warehouse.marts import Mart


def refresh_rebuilt(con: duckdb.DuckDBPyConnection, mart: Mart, upstream_changed: bool = True) -> int | None:
    """Rebuild a ``kind: rebuild`` mart (e.g. ``retention_cohorts``) from the gold marts it reads, with
    its ``insert.sql``, and record the watermark in the same transaction; returns its row count, or
    None when it was skipped.

    Reads only the warehouse: refresh what it reads first. The watermark copies the first mart it
    reads, so freshness shows which silver version it covers. Skipped (only the watermark moves)
    when ``upstream_changed`` is false — the marts it reads rewrote no rows in this run — and it was
    built before with the same ``insert.sql`` (its SHA-256 is the watermark's definition).

    Raises:
        LookupError: a mart it reads has never been refreshed.
    """
    (upstream, *_) = mart.spec.reads
    source = gold_watermark(con, upstream)
    if source is None:
        raise LookupError(f"{upstream} has never been refreshed: refresh it before {mart.name}")
    insert = mart.sql("insert")
    definition = f"insert_sha256={hashlib.sha256(insert.encode()).hexdigest()}"
    previous = gold_watermark(con, mart.name)
    skip = not upstream_changed and previous is not None and previous.definition == definition
    with transaction(con):
        if not skip:
            con.execute(insert)
        # Recorded like the incremental marts' watermarks, so freshness reports it too.
        set_gold_watermark(con, mart.name, GoldWatermark(source.silver_version, source.bronze_version, definition))
    return None if skip else int(con.table(mart.name).aggregate("count(*)").fetchall()[0][0])
