"""Incremental refresh of the gold marts in DuckDB from silver's change data feed.

Each mart keeps a watermark (the silver version it consumed). A run reads the silver rows
inserted since then, derives the (app, day) pairs they touch, expands them to the days whose
value can change (``select_refresh_days.sql``), and rewrites exactly those rows — delete and
insert in one transaction, so a rerun gives the same table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.gold import MARTS, gold_watermark, load_sql
from warehouse.lake import Lake
from warehouse.tables import EVENTS, RAW_EVENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did: silver range consumed, changed and rewritten (app, day) rows."""

    mart: str
    silver_from: int
    silver_to: int
    bronze_version: int
    changed_days: int
    rewritten_rows: int


def refresh_mart(con: duckdb.DuckDBPyConnection, lake: Lake, mart_name: str) -> RefreshStats:
    """Bring one mart up to date with silver; idempotent and safe to rerun after a failure.

    Raises:
        KeyError: unknown mart name.
        duckdb.Error: when the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    mart = MARTS[mart_name]
    # Read silver's bronze watermark before silver's version: gold then never claims to cover
    # more bronze than the silver it read.
    bronze_version = lake.watermark(EVENTS.name, RAW_EVENTS.name)
    silver_version = lake.version(EVENTS)
    previous = gold_watermark(con, mart.table)
    silver_from = previous.silver_version if previous else -1
    if silver_version is None:
        silver_version = -1

    changes = lake.changes(EVENTS, silver_from, silver_version)
    changed = (
        changes.select(["app", "event_date"])
        .group_by(["app", "event_date"])
        .aggregate([])
        .rename_columns(["app", "day"])
    )
    rewritten = 0
    con.begin()
    try:
        if changed.num_rows:
            rewritten = _rewrite(con, lake, mart_name, silver_version, changed)
        con.execute(
            load_sql("upsert_gold_watermark"),
            {"mart": mart.table, "silver_version": silver_version, "bronze_version": bronze_version},
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    log.info(
        "%s: silver (%d, %d] touched %d days, rewrote %d rows",
        mart.table,
        silver_from,
        silver_version,
        changed.num_rows,
        rewritten,
    )
    return RefreshStats(mart.table, silver_from, silver_version, bronze_version, changed.num_rows, rewritten)


def _rewrite(con: duckdb.DuckDBPyConnection, lake: Lake, mart_name: str, silver_version: int, changed: pa.Table) -> int:
    mart = MARTS[mart_name]
    con.register("silver_events", lake.dataset(EVENTS, silver_version))
    con.register("changed_days", changed)
    con.execute(load_sql("create_people_events"))
    try:
        refresh_days = con.sql(
            load_sql("select_refresh_days", mart.table),
            params={"window_days": mart.window_days, "whole_month": mart.whole_month},
        ).to_arrow_table()
        if refresh_days.num_rows == 0:
            return 0
        con.register("refresh_days", refresh_days)
        first_day = pc.min(refresh_days["day"]).as_py()
        last_day = pc.max(refresh_days["day"]).as_py()
        # Scan only the partitions the refreshed windows can read (pushed down to the dataset).
        scan_from = min(first_day - timedelta(days=mart.window_days - 1), first_day.replace(day=1))
        con.execute(load_sql("delete_refresh_days", mart.table))
        con.execute(load_sql(mart.insert_sql), {"first_day": scan_from, "last_day": last_day})
        return refresh_days.num_rows
    finally:
        con.execute("drop view if exists people_events")
        for view in ("silver_events", "changed_days", "refresh_days"):
            con.unregister(view)
