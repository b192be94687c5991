"""Reprocessing: rebuild silver for an ``event_date`` range from bronze, replacing the range in one
Delta commit (``replaceWhere``), e.g. after a scrub rule was added. Rerunning it gives the same rows;
gold follows through silver's change data feed (inserts and deletes)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

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
    without_erased,
    write_checked,
)
from warehouse.lake.history import change_stream
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.lake.tiers import expired_before

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
        ValueError: ``last`` before ``first``, or the range holds events bronze no longer has: days in
            silver's cold tier, or events received before bronze's expiry horizon (:mod:`warehouse.lake.tiers`).
    """
    ensure_tables(store, rules)
    if last < first:
        raise ValueError(f"reprocess range is empty: {first} > {last}")
    cold = (
        store.cold.dataset(EVENTS, None, (("event_date", ">=", first), ("event_date", "<=", last)))
        if store.cold
        else None
    )
    if cold is not None and cold.count_rows():
        raise ValueError(
            f"silver's days {first}..{last} are partly in the cold tier (older than the hot horizon); "
            "reprocessing reads bronze, whose retention is shorter: reprocess recent days only"
        )
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    stats = BatchStats("reprocess", bronze_to=watermark)
    in_range = day_range_predicate("event_date", first, last)
    received = day_range_predicate("received_date", first - timedelta(days=1), date(9999, 12, 31))
    scan = change_stream(store, RAW_EVENTS, -1, watermark, predicate=received).read_all()
    with RowPool(rules.parallel, scan.num_rows) as pool:
        decoded, stats.erased, _ = without_erased(store, rules, transform.decode(scan, pool))
        event_day = pl.col("timestamp").dt.date()
        ids = decoded.filter(event_day.is_between(first, last))["event_id"].unique()
        decoded = decoded.filter(pl.col("event_id").is_in(ids.implode()))
        stats.rows, stats.processes, stats.engine = decoded.height, pool.processes, pool.engine
        range_expr = (pads.field("event_date") >= pa.scalar(first, pa.date32())) & (
            pads.field("event_date") <= pa.scalar(last, pa.date32())
        )
        prior = prior_hashes(store, decoded["event_id"], exclude=range_expr)
        split = validate(store, decoded, rules.suite, prior, run_id, pool)
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


def _refuse_expired(store: Lake, first: date, last: date) -> None:
    """Refuse a range whose events bronze may no longer hold (rebuilding it would delete them).

    Raises:
        ValueError: days of the range are in silver's cold tier, or silver holds events of the range
            received before the day bronze's retention deleted everything before (:func:`expired_before`).
    """
    days = (("event_date", ">=", first), ("event_date", "<=", last))
    if store.cold is not None and store.cold.dataset(EVENTS, None, days).count_rows():
        raise ValueError(
            f"silver's days {first}..{last} are partly in the cold tier (older than the hot horizon, "
            "EVENTLAKE_SILVER_HOT_DAYS): reprocessing rebuilds from bronze, whose retention is shorter"
        )
    horizon = expired_before(store, RAW_EVENTS)
    if horizon is None:
        return
    received = pa.scalar(datetime.combine(date.fromisoformat(horizon), time(), UTC), pa.timestamp("us", tz="UTC"))
    early = store.dataset(EVENTS, None, days, cold=False).count_rows(filter=pads.field("received_at") < received)
    if early:
        raise ValueError(
            f"{early} events of {first}..{last} were received before {horizon}, and bronze's retention "
            "(EVENTLAKE_BRONZE_TTL_DAYS) deleted what it received then: reprocessing would lose them"
        )


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
