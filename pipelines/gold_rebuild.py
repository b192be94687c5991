"""Marts of ``kind: rebuild`` (e.g. ``retention_cohorts``): rebuilt whole from other gold marts."""

from __future__ import annotations

import duckdb

from warehouse.gold import GoldWatermark, gold_watermark, set_gold_watermark, transaction
from warehouse.marts import Mart


def refresh_rebuilt(con: duckdb.DuckDBPyConnection, mart: Mart) -> int:
    """Rebuild a ``kind: rebuild`` mart (e.g. ``retention_cohorts``) from the gold marts it reads, with
    its ``insert.sql``, and record the watermark in the same transaction; returns its row count.

    Reads only the warehouse: refresh what it reads first. The watermark copies the first mart it
    reads, so freshness shows which silver version it covers.

    Raises:
        LookupError: a mart it reads has never been refreshed.
    """
    (upstream, *_) = mart.spec.reads
    source = gold_watermark(con, upstream)
    if source is None:
        raise LookupError(f"{upstream} has never been refreshed: refresh it before {mart.name}")
    with transaction(con):
        con.execute(mart.sql("insert"))
        rows = con.table(mart.name).aggregate("count(*)").fetchall()[0][0]
        # Recorded like the incremental marts' watermarks, so freshness reports it too.
        set_gold_watermark(con, mart.name, GoldWatermark(source.silver_version, source.bronze_version))
    return int(rows)
