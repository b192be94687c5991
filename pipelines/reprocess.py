"""Reprocessing: rebuild silver for an ``event_date`` range from bronze, replacing the range in one
Delta commit (``replaceWhere``), e.g. after a scrub rule was added. Rerunning it gives the same rows;
gold follows through silver's change data feed (inserts and deletes)."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipelines import transform
from pipelines.parallel import RowPool
from pipelines.silver import (
    BatchStats,
    Rules,
    count,
    ensure_tables,
    prior_hashes,
    quarantine_and_build,
    record_replays,
    validate,
    write_checked,
)
from warehouse.lake.history import change_stream
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS

log = logging.getLogger(__name__)


def day_range_predicate(column: str, first: date, last: date) -> str:
    """delta-rs SQL filter ``column`` in ``[first, last]`` (ISO dates, both inclusive)."""
    return f"{column} >= '{first.isoformat()}' and {column} <= '{last.isoformat()}'"


def reprocess(store: Lake, rules: Rules, run_id: str, first: date, last: date) -> BatchStats:
    """Rebuild silver's ``event_date`` range ``[first, last]`` from bronze (up to silver's watermark).

    Reads the bronze partitions that can hold such events (``received_date >= first - 1 day``:
    the suite rejects timestamps more than 24 h after receipt) plus every copy of their event ids,
    re-runs validation, dedup, scrubbing and enrichment, and replaces the range in one commit.
    Rows that now fail are quarantined (once per event_id); quarantined rows that now pass are
    recorded as replayed, as :func:`pipelines.silver.replay_quarantine` would. Idempotent.

    Raises:
        ValueError: ``last`` before ``first``.
    """
    ensure_tables(store, rules)
    if last < first:
        raise ValueError(f"reprocess range is empty: {first} > {last}")
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    stats = BatchStats("reprocess", bronze_to=watermark)
    in_range = day_range_predicate("event_date", first, last)
    received = day_range_predicate("received_date", first - timedelta(days=1), date(9999, 12, 31))
    scan = change_stream(store, RAW_EVENTS, -1, watermark, predicate=received).read_all()
    with RowPool(rules.parallel, scan.num_rows) as pool:
        decoded = transform.decode(scan, pool)
        event_day = pl.col("timestamp").dt.date()
        ids = decoded.filter(event_day.is_between(first, last))["event_id"].unique()
        decoded = decoded.filter(pl.col("event_id").is_in(ids.implode()))
        stats.rows, stats.processes = decoded.height, pool.processes
        range_expr = (pads.field("event_date") >= pa.scalar(first, pa.date32())) & (
            pads.field("event_date") <= pa.scalar(last, pa.date32())
        )
        prior = prior_hashes(store, decoded["event_id"], exclude=range_expr)
        split = validate(store, decoded, rules.suite, prior, run_id)
        stats.quarantine_inserted, silver = quarantine_and_build(store, rules, split, run_id, pool)
    silver = _in_range_only(store, silver, first, last, range_expr)
    _, checks = write_checked(lambda: store.replace_where(EVENTS, silver, in_range), silver, rules.silver_suite)
    kept = pl.from_arrow(silver.select(["event_id", "bronze_version"]))
    assert isinstance(kept, pl.DataFrame)
    stats.replayed = record_replays(store, kept, run_id)  # rows that left quarantine on the way
    stats.inserted = silver.num_rows
    stats.replaced_days = (last - first).days + 1
    count(stats, split, silver, checks)
    log.info("reprocessed silver %s..%s: %d rows from %d bronze rows", first, last, silver.num_rows, decoded.height)
    return stats


def _in_range_only(store: Lake, silver: pa.Table, first: date, last: date, range_expr: pads.Expression) -> pa.Table:
    """``silver`` rows whose ``event_date`` is in ``[first, last]`` and whose event id has no silver row
    outside the range (an event whose corrected time moved it stays where silver has it)."""
    outside = store.dataset(EVENTS).to_table(
        columns=["event_id"], filter=pads.field("event_id").isin(silver["event_id"]) & ~range_expr
    )
    keep = pc.and_(
        pc.invert(pc.is_in(silver["event_id"], outside["event_id"])),
        pc.and_(
            pc.greater_equal(silver["event_date"], pa.scalar(first, pa.date32())),
            pc.less_equal(silver["event_date"], pa.scalar(last, pa.date32())),
        ),
    )
    return silver.filter(keep)
