"""Incremental refresh of the gold marts in DuckDB from silver's change data feed.

Each mart keeps a watermark (the silver version it consumed). A run reads the silver rows
inserted since then, derives the (app, source, day) triples they touch, expands them to the days whose
value can change (``select_refresh_days.sql``), and rewrites exactly those rows — delete and
insert in one transaction, so a rerun gives the same table.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipelines.first_seen import first_seen_moves, refresh_first_seen
from pipelines.identity import merged_days, refresh_identity
from warehouse.gold import MARTS, GoldWatermark, Mart, MartInputs, gold_watermark, load_sql, set_gold_watermark
from warehouse.lake import FileFilter, Lake
from warehouse.settings import get_settings
from warehouse.tables import (
    ACTIVE_PERSON_WEEKS,
    DATA_QUALITY_DAILY,
    EVENTS,
    RAW_EVENTS,
    REJECTED_EVENTS,
    RETENTION_COHORTS,
    TableDef,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did: silver range consumed, changed and rewritten (app, source, day) rows."""

    mart: str
    silver_from: int
    silver_to: int
    bronze_version: int
    changed_days: int
    rewritten_rows: int


def refresh_mart(con: duckdb.DuckDBPyConnection, lake: Lake, mart_name: str) -> RefreshStats:
    """Bring one mart up to date with silver; idempotent and safe to rerun after a failure.

    The days to rewrite go in batches of ``gold_batch_weeks`` ISO weeks, one transaction each; the
    watermark commits with the last one (a failure in between: the rerun rewrites those days again).

    The gold marts it reads (``Mart.reads``, e.g. ``active_person_days``) are brought up to the
    same silver version first (a no-op when the run already refreshed them).

    Raises:
        KeyError: unknown mart name.
        duckdb.Error: when the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    # Read silver's bronze watermark before silver's version: gold then never claims to cover
    # more bronze than the silver it read.
    bronze_version = lake.watermark(EVENTS.name, RAW_EVENTS.name)
    return _refresh(con, lake, MARTS[mart_name], bronze_version, _version(lake, EVENTS))


def _refresh(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, bronze_version: int, silver_version: int
) -> RefreshStats:
    for upstream in (MARTS[name] for name in mart.reads if name in MARTS):
        current = gold_watermark(con, upstream.table)
        # Already refreshed by this run (the usual case: the assets run in dependency order).
        if current is None or (current.silver_version, current.definition) != (
            silver_version,
            _definition(upstream.inputs(lake)),
        ):
            _refresh(con, lake, upstream, bronze_version, silver_version)
    inputs = mart.inputs(lake)
    timezone = get_settings().reporting_timezone
    definition = _definition(inputs)
    previous = gold_watermark(con, mart.table)
    # Built with other definitions (a funnel was edited): recompute from the start of silver.
    silver_from = previous.silver_version if previous and previous.definition == definition else -1

    # The links and first-seen times people_events and the marts read must cover the silver read here.
    refresh_identity(con, lake, silver_version)
    refresh_first_seen(con, lake, silver_version)

    # The changed rows stream through DuckDB (a first build's are the whole history): only their days stay.
    changed = _changed_days(
        con,
        _changed_rows(con, lake, mart, silver_from, silver_version),
        merged_days(con, silver_from, silver_version),
        timezone,
    )
    rewritten = 0
    con.begin()
    try:
        if silver_from == -1:
            # A first build or new definitions (funnels, time zone, session timeout): rows of days
            # the new definition no longer produces must go too, not only the days rewritten.
            con.execute(load_sql("delete_all_rows", mart.table))
            if mart.state:
                con.execute(load_sql("delete_all_rows", mart.state))
        if changed.num_rows:
            rewritten = _rewrite(con, lake, mart, inputs, silver_version, changed)
        set_gold_watermark(con, mart.table, GoldWatermark(silver_version, bronze_version, definition))
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


def _definition(inputs: MartInputs) -> str:
    """The fingerprint kept with a mart's watermark: its inputs' definition and the reporting zone.

    Days in another reporting zone are other days: a new zone recomputes the mart (UTC, the
    default, keeps the fingerprints of warehouses built before the setting existed).
    """
    timezone = get_settings().reporting_timezone
    return inputs.definition if timezone == "UTC" else f"{inputs.definition}|reporting_timezone={timezone}"


def _changed_rows(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, silver_from: int, silver_version: int
) -> pa.RecordBatchReader:
    """(app, source, timestamp) of the silver rows inserted or deleted in (silver_from, silver_version],
    streamed (a first build's are the whole history).

    Deletes too: a reprocessed range (pipelines.silver.reprocess) may lose rows on some days. Plus,
    for marts that count new people, the days a first visit moved away from (none of their events changed).
    """
    columns = ["app", "source", "timestamp"]
    schema = pa.schema([EVENTS.schema.field(name) for name in columns])
    feed = lake.change_stream(EVENTS, silver_from, silver_version, change_types=("insert", "delete"), columns=columns)
    moves = first_seen_moves(con, silver_from, silver_version).cast(schema) if mart.first_seen else schema.empty_table()
    return pa.RecordBatchReader.from_batches(
        schema, itertools.chain((batch.select(columns) for batch in feed), moves.to_batches())
    )


def _changed_days(
    con: duckdb.DuckDBPyConnection, changes: pa.RecordBatchReader, merged: pa.Table, timezone: str
) -> pa.Table:
    """The reporting days (app, source, day) that changed silver rows and identity merges touch."""
    views = {"changed_rows": changes, "merged_days": merged}
    for name, view in views.items():
        con.register(name, view)
    try:
        return con.sql(load_sql("select_changed_days"), params={"timezone": timezone}).to_arrow_table()
    finally:
        for name in views:
            con.unregister(name)


def _rewrite(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, inputs: MartInputs, silver_version: int, changed: pa.Table
) -> int:
    timezone = get_settings().reporting_timezone
    views = {
        "changed_days": changed,
        "reporting_settings": pa.table({"timezone": [timezone]}),
        **inputs.tables,
    }
    for name, view in views.items():
        con.register(name, view)
    try:
        refresh_days = con.sql(
            load_sql("select_refresh_days", mart.table),
            params={
                "window_days": mart.window_days,
                "lookback_days": inputs.lookback_days,
                "whole_month": mart.whole_month,
                "whole_week": mart.whole_week,
                "fill_spine": mart.fill_spine,
            },
        ).to_arrow_table()
        batches = _week_batches(refresh_days, get_settings().gold_batch_weeks)
        for index, batch in enumerate(batches):
            if index:
                # Commit each batch: a transaction holds its changes in memory until it commits.
                # The watermark moves with the last batch, so a failure in between leaves it where
                # it was and the rerun rewrites these days again.
                con.commit()
                con.begin()
            _rewrite_batch(con, lake, mart, inputs, silver_version, batch, timezone)
        return refresh_days.num_rows
    finally:
        for name in views:
            con.unregister(name)


def _week_batches(refresh_days: pa.Table, weeks: int) -> list[pa.Table]:
    """``refresh_days`` split into runs of ``weeks`` whole ISO weeks (Monday to Sunday), in day order.

    A batch never splits an ISO week: weekly rows (funnel weeks, ``active_person_weeks``, calendar
    WAU) are computed from the refresh days of their week. Calendar months can span two batches;
    :func:`_rewrite_batch` widens such a batch's scan to the whole month.
    """
    if refresh_days.num_rows == 0:
        return []
    epoch_days = pc.cast(refresh_days["day"], pa.int32()).to_numpy()
    # 1970-01-01 was a Thursday: (epoch day + 3) // 7 numbers the ISO weeks, each from its Monday.
    batch_of = (epoch_days + 3) // 7 // weeks
    return [refresh_days.filter(pa.array(batch_of == batch)) for batch in sorted(set(batch_of.tolist()))]


def _rewrite_batch(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    mart: Mart,
    inputs: MartInputs,
    silver_version: int,
    refresh_days: pa.Table,
    timezone: str,
) -> None:
    con.register("refresh_days", refresh_days)
    try:
        read_days = refresh_days
        if mart.counts_from_state:
            # The calendar period of its counts: MAU's month, else the ISO week (WAU, active_person_weeks).
            period = "month" if mart.whole_month else "week"
            refresh_days = con.sql(load_sql("select_state_days"), params={"period": period}).to_arrow_table()
            con.register("refresh_days", refresh_days)
            read_days = refresh_days.filter(refresh_days["reads_window"])
        if mart.partial_days:
            refresh_days = con.sql(load_sql("select_partial_days")).to_arrow_table()
            con.register("refresh_days", refresh_days)
        scan_from, scan_to = _scan_range(mart, inputs, read_days, pc.min(refresh_days["day"]).as_py())
        # Scan only the partitions the refreshed windows can read: reporting days map to the UTC
        # partitions (event_date) of the same day, and the next and previous one in other zones.
        if mart.reads_events:
            pad = timedelta(days=0 if timezone == "UTC" else 1)
            partitions = (("event_date", ">=", scan_from - pad), ("event_date", "<=", scan_to + pad))
            con.register("silver_events", lake.dataset(EVENTS, silver_version, files=partitions))
            con.execute(load_sql("create_people_events"))
        if mart.keeps_rows:
            con.execute(load_sql("create_previous_rows", mart.table))
        con.execute(load_sql(mart.delete_sql, mart.table), inputs.params if mart.partial_days else None)
        con.execute(load_sql(mart.insert_sql), {"first_day": scan_from, "last_day": scan_to, **inputs.params})
        if mart.state:
            con.execute(load_sql(f"maintain_{mart.state}"))
        # Row-level lineage: the silver version each rewritten row was computed from.
        con.execute(load_sql("mark_refreshed_rows", mart.table), {"silver_version": silver_version})
    finally:
        con.execute("drop table if exists previous_rows")
        con.execute("drop view if exists people_events")
        con.execute("drop view if exists resolved_events")
        for name in ("refresh_days", "silver_events"):
            con.unregister(name)


def _scan_range(mart: Mart, inputs: MartInputs, read_days: pa.Table, anchor: date) -> tuple[date, date]:
    """The reporting days a batch's SQL reads (``$first_day``/``$last_day``, inclusive) to recompute
    ``read_days``: their trailing windows, the lookback past the last one and, for calendar months,
    the whole months. When no day reads its window (all counted from state): the empty range
    ``anchor`` .. ``anchor`` - 1 day."""
    if read_days.num_rows == 0:
        return anchor, anchor - timedelta(days=1)
    first_day = pc.min(read_days["day"]).as_py()
    last_day = pc.max(read_days["day"]).as_py()
    scan_from = first_day - timedelta(days=mart.window_days - 1)
    scan_to = last_day + timedelta(days=inputs.lookback_days)
    if mart.whole_month:
        # A calendar month's count reads the whole month, also when this batch holds part of it.
        next_month = (last_day.replace(day=1) + timedelta(days=31)).replace(day=1)
        scan_from = min(scan_from, first_day.replace(day=1))
        scan_to = max(scan_to, next_month - timedelta(days=1))
    return scan_from, scan_to


def refresh_data_quality(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Bring ``data_quality_daily`` up to date with bronze, silver and quarantine.

    Returns the number of (app, source, received day) triples recomputed.

    Incremental by received day: the change data feeds of the three tables since the versions the
    mart last read give the (app, source, received day) triples that changed — plus the days of
    quarantined copies whose event has just reached silver (they become duplicates) — and only
    those are recomputed, from the three tables filtered to them (bronze and quarantine by their
    ``received_date`` partitions, silver by ``received_at`` file statistics). Bronze is read at the
    version silver covers, so events silver has not processed yet are not counted as duplicates.
    A warehouse whose watermark lacks the quarantine version (built before this was incremental),
    or that never ran, is rebuilt from the start of the three feeds.

    Raises:
        duckdb.Error: the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    bronze_version = lake.watermark(EVENTS.name, RAW_EVENTS.name)
    silver_version = _version(lake, EVENTS)
    quarantine_version = _version(lake, REJECTED_EVENTS)
    previous = gold_watermark(con, DATA_QUALITY_DAILY)
    read_from = previous if previous is not None and previous.quarantine_version is not None else None
    quarantine_from = -1 if read_from is None or read_from.quarantine_version is None else read_from.quarantine_version
    both = ("insert", "delete")
    feeds = {
        "bronze_changes": lake.change_stream(
            RAW_EVENTS,
            read_from.bronze_version if read_from else -1,
            bronze_version,
            both,
            columns=["app", "source", "received_date"],
        ),
        "silver_changes": lake.change_stream(
            EVENTS,
            read_from.silver_version if read_from else -1,
            silver_version,
            both,
            columns=["app", "source", "received_at", "event_id"],
        ),
        # The quarantine has no change data feed: the received days of the files it added since.
        "quarantine_changed_days": pa.table(
            {
                "day": lake.changed_partitions(
                    REJECTED_EVENTS,
                    quarantine_from,
                    quarantine_version,
                )
            }
        ),
        "quarantine_ids": _dataset(lake, REJECTED_EVENTS, quarantine_version).to_table(
            columns=["app", "source", "received_date", "event_id"]
        ),
    }
    for name, feed in feeds.items():
        con.register(name, feed)
    try:
        days = con.sql(load_sql("select_quality_days")).to_arrow_table()
    finally:
        for name in feeds:
            con.unregister(name)
    inputs: dict[str, object] = {}
    if days.num_rows:
        received_days = tuple(pc.unique(days["day"]).to_pylist())
        received = (("received_date", "in", received_days),)
        since = datetime.combine(min(received_days), datetime.min.time(), UTC)
        until = datetime.combine(max(received_days) + timedelta(days=1), datetime.min.time(), UTC)
        quarantined = pc.sum(pc.is_in(feeds["quarantine_ids"]["received_date"], pa.array(received_days))).as_py()
        inputs = {
            "bronze_events": _dataset(lake, RAW_EVENTS, bronze_version, received),
            "quarantine_events": _dataset(lake, REJECTED_EVENTS, quarantine_version, received),
            # Silver is partitioned by event time: file statistics on received_at skip the rest.
            "silver_events": _dataset(
                lake, EVENTS, silver_version, (("received_at", ">=", since), ("received_at", "<", until))
            ),
            # Whether a quarantined copy's event is in silver by now: the whole table, opened only
            # when the changed days hold quarantined rows (none on most runs).
            "silver_event_ids": _dataset(lake, EVENTS, silver_version if quarantined else -1),
        }
    for name, view in inputs.items():
        con.register(name, view)
    con.begin()
    try:
        if days.num_rows or read_from is None:
            con.register("quality_days", days)
            con.execute(load_sql("delete_quality_days"), {"rebuild": read_from is None})
        if days.num_rows:
            con.execute(load_sql("insert_data_quality_daily"))
        watermark = GoldWatermark(silver_version, bronze_version, quarantine_version=quarantine_version)
        set_gold_watermark(con, DATA_QUALITY_DAILY, watermark)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        for name in (*inputs, "quality_days"):
            con.unregister(name)
    log.info("%s: %d received days changed", DATA_QUALITY_DAILY, days.num_rows)
    return days.num_rows


def _version(lake: Lake, table: TableDef) -> int:
    """The table's current Delta version, -1 when it does not exist yet."""
    version = lake.version(table)
    return -1 if version is None else version


def _dataset(lake: Lake, table: TableDef, version: int, files: FileFilter = ()) -> pads.Dataset:
    """``table`` frozen at ``version`` (``files``: see :meth:`Lake.dataset`); empty for version -1."""
    return lake.dataset(table, version, files) if version >= 0 else pads.dataset(table.schema.empty_table())


def refresh_retention(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild ``retention_cohorts`` from ``active_person_weeks``; returns its row count.

    Reads only the warehouse: refresh ``active_person_weeks`` first. The watermark copies that
    mart's, so freshness shows which silver version the cohorts cover.

    Raises:
        LookupError: ``active_person_weeks`` has never been refreshed.
    """
    source = gold_watermark(con, ACTIVE_PERSON_WEEKS)
    if source is None:
        raise LookupError(f"{ACTIVE_PERSON_WEEKS} has never been refreshed: refresh it before {RETENTION_COHORTS}")
    return _replace(con, RETENTION_COHORTS, source.silver_version, source.bronze_version)


def _replace(con: duckdb.DuckDBPyConnection, table: str, silver_version: int, bronze_version: int) -> int:
    """Run ``replace_<table>.sql`` and record the watermark in one transaction; returns the row count."""
    con.begin()
    try:
        con.execute(load_sql(f"replace_{table}"))
        rows = con.table(table).aggregate("count(*)").fetchall()[0][0]
        # Recorded like the incremental marts' watermarks, so freshness reports it too.
        set_gold_watermark(con, table, GoldWatermark(silver_version, bronze_version))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return int(rows)


def pipeline_freshness(con: duckdb.DuckDBPyConnection, lake: Lake) -> pa.Table:
    """When each layer last changed: ``(layer, table_name, version, updated_at UTC)`` rows.

    Lake tables report their latest Delta commit (version and commit time); gold marts report
    the silver version they consumed and when their watermark last moved.
    """
    rows: list[dict[str, object]] = []
    for layer, table in (("bronze", RAW_EVENTS), ("silver", EVENTS), ("quarantine", REJECTED_EVENTS)):
        dt = lake.open(table)
        if dt is None:
            continue
        last = dt.history(1)[0]
        rows.append(
            {
                "layer": layer,
                "table_name": table.name,
                "version": dt.version(),
                "updated_at": datetime.fromtimestamp(last["timestamp"] / 1000, tz=UTC),
            }
        )
    for mart, silver_version, updated_at in (
        con.table("gold_watermarks").select("mart, silver_version, updated_at").fetchall()
    ):
        rows.append({"layer": "gold", "table_name": mart, "version": silver_version, "updated_at": updated_at})
    schema = pa.schema(
        [
            ("layer", pa.string()),
            ("table_name", pa.string()),
            ("version", pa.int64()),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
