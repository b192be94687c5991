"""The data quality mart (``kind: quality``): valid, bot, quarantined and duplicate events per
app, source and received day, incremental by received day over bronze, silver and the quarantine."""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipelines.gold import table_version
from warehouse.gold import GoldWatermark, gold_watermark, load_sql, registered, set_gold_watermark, transaction
from warehouse.lake.history import ChangeFeed, FeedSource, change_stream, changed_partitions
from warehouse.lake.store import FileFilter, Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS, TableDef
from warehouse.marts import Mart

log = logging.getLogger(__name__)

#: ``received_before`` and ``kept_before`` of a rebuild: nothing counted yet.
_NO_RECEIVED = pa.schema(
    [("app", pa.string()), ("source", pa.string()), ("day", pa.date32()), ("events", pa.int64())]
).empty_table()
_NO_KEPT = pa.schema(
    [
        ("app", pa.string()),
        ("source", pa.string()),
        ("day", pa.date32()),
        ("outcome", pa.string()),
        ("events", pa.int64()),
    ]
).empty_table()


def refresh_data_quality(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, feeds: FeedSource | None = None
) -> int:
    """Bring a ``kind: quality`` mart (``data_quality_daily``) up to date with bronze, silver and quarantine.

    Returns the number of (app, source, received day) triples recomputed (0 at once when none of
    the three tables moved since the versions it last read). ``feeds``: silver's change feed from a
    version to its current one, shared with the run's other readers (default: read here).

    Incremental by received day: the change data feeds of the three tables since the versions the
    mart last read give the (app, source, received day) triples that changed — plus the days of
    quarantined copies whose event has just reached silver (they become duplicates) — and only
    those are recomputed: what a day received, and its valid and bot events, are its previous counts
    plus bronze's and silver's change feeds counted per day, so neither is re-read (bronze holds a
    file per group commit, silver's today every micro-batch since midnight); its quarantined rows are
    read from the quarantine's ``received_date`` partitions. Bronze is read up to the version silver
    covers, so events silver has not processed yet are not counted as duplicates.
    The outcome counts a rescrub changed in silver's cold tier, which no change feed carries, are
    added at the silver version they were recorded for (``rescrub_count_changes``,
    :class:`pipelines.rescrub.GoldChanges`).
    A warehouse whose watermark lacks the quarantine version (built before this was incremental),
    or that never ran, is rebuilt from the start of the three feeds.

    Raises:
        duckdb.Error: the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    now = GoldWatermark(
        table_version(lake, EVENTS),
        lake.watermark(EVENTS.name, RAW_EVENTS.name),
        quarantine_version=table_version(lake, REJECTED_EVENTS),
    )
    previous = gold_watermark(con, mart.name)
    read_from = previous if previous is not None and previous.quarantine_version is not None else None
    if read_from == now:
        return 0
    changes = _feeds(lake, read_from, now, feeds)
    with registered(con, {"bronze_changes": changes.pop("bronze_changes")}):
        bronze_counts = con.sql(mart.sql("select_bronze_counts")).to_arrow_table()
    with registered(con, {"silver_count_changes": changes.pop("silver_count_changes")}):
        silver_counts = con.sql(mart.sql("select_silver_counts")).to_arrow_table()
    with registered(con, {**changes, "bronze_counts": bronze_counts}):
        days = con.sql(mart.sql("select_days")).to_arrow_table()
    if read_from is not None:  # a rebuild counts silver as it is: the rescrubs' changes are in it
        versions = {"after_version": read_from.silver_version, "until_version": now.silver_version}
        rescrubbed = con.sql(load_sql("select_rescrub_counts"), params=versions).to_arrow_table()
        if rescrubbed.num_rows:
            silver_counts = pa.concat_tables([silver_counts, rescrubbed.cast(silver_counts.schema)])
            recorded = rescrubbed.select(["app", "source", "day"]).cast(days.schema)
            days = pa.concat_tables([days, recorded]).group_by(["app", "source", "day"]).aggregate([])
    quarantine_ids = changes["quarantine_ids"]
    assert isinstance(quarantine_ids, pa.Table)
    inputs = _day_inputs(lake, days, quarantine_ids, now) if days.num_rows else {}
    counts = {"quality_days": days, "bronze_counts": bronze_counts, "silver_counts": silver_counts}
    with registered(con, {**inputs, **counts}), transaction(con):
        received = con.sql(mart.sql("select_received")).to_arrow_table() if read_from else _NO_RECEIVED
        kept = con.sql(mart.sql("select_kept")).to_arrow_table() if read_from else _NO_KEPT
        if days.num_rows or read_from is None:
            con.execute(mart.sql("delete"), {"rebuild": read_from is None})
        if days.num_rows:
            with registered(con, {"received_before": received, "kept_before": kept}):
                con.execute(mart.sql("insert"))
        set_gold_watermark(con, mart.name, now)
    log.info("%s: %d received days changed", mart.name, days.num_rows)
    return days.num_rows


def _dataset(lake: Lake, table: TableDef, version: int, files: FileFilter = ()) -> pads.Dataset:
    """``table`` frozen at ``version`` (``files``: see :meth:`Lake.dataset`); empty for version -1."""
    return lake.dataset(table, version, files) if version >= 0 else pads.dataset(table.schema.empty_table())


def _feeds(
    lake: Lake, read_from: GoldWatermark | None, now: GoldWatermark, feeds: FeedSource | None
) -> dict[str, object]:
    """What changed in the three tables since ``read_from`` (None: since their start) up to ``now``."""
    silver_from = read_from.silver_version if read_from else -1
    silver = feeds(silver_from) if feeds else ChangeFeed(lake, EVENTS, silver_from, now.silver_version)
    both = ("insert", "delete")
    quarantine_version = -1 if now.quarantine_version is None else now.quarantine_version
    quarantine_from = -1 if read_from is None or read_from.quarantine_version is None else read_from.quarantine_version
    return {
        "bronze_changes": change_stream(
            lake,
            RAW_EVENTS,
            read_from.bronze_version if read_from else -1,
            now.bronze_version,
            both,
            columns=["app", "source", "received_date"],
        ),
        "silver_changes": silver.read(["app", "source", "received_at", "event_id"], both),
        "silver_count_changes": silver.read(["app", "source", "received_at", "is_bot", "is_asset"], both),
        # The quarantine has no change data feed: the received days of the files it added since.
        "quarantine_changed_days": pa.table(
            {"day": changed_partitions(lake, REJECTED_EVENTS, quarantine_from, quarantine_version)}
        ),
        "quarantine_ids": _dataset(lake, REJECTED_EVENTS, quarantine_version).to_table(
            columns=["app", "source", "received_date", "event_id"]
        ),
    }


def _day_inputs(lake: Lake, days: pa.Table, quarantine_ids: pa.Table, now: GoldWatermark) -> dict[str, object]:
    """The quarantine at ``now``, read only where the changed received ``days`` are, and silver's event
    ids when those days hold quarantined rows (bronze and silver are counted from their change data
    feeds instead)."""
    received_days = tuple(pc.unique(days["day"]).to_pylist())
    received = (("received_date", "in", received_days),)
    quarantined = pc.sum(pc.is_in(quarantine_ids["received_date"], pa.array(received_days))).as_py()
    quarantine_version = -1 if now.quarantine_version is None else now.quarantine_version
    return {
        "quarantine_events": _dataset(lake, REJECTED_EVENTS, quarantine_version, received),
        # Whether a quarantined copy's event is in silver by now: the whole table, opened only
        # when the changed days hold quarantined rows (none on most runs).
        "silver_event_ids": _dataset(lake, EVENTS, now.silver_version if quarantined else -1),
    }
