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
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.first_seen import first_seen_moves, refresh_first_seen
from pipelines.identity import merged_days, refresh_identity
from pipelines.mart_inputs import MartInputs, mart_inputs
from pipelines.refresh_days import scan_range, week_batches
from warehouse.gold import (
    GoldOptions,
    GoldWatermark,
    gold_watermark,
    load_sql,
    registered,
    set_gold_watermark,
    transaction,
)
from warehouse.lake.history import change_stream
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, TableDef
from warehouse.marts import Mart

log = logging.getLogger(__name__)

#: The settings' defaults (UTC days, 4-week batches, 30-minute sessions, the shipped marts).
DEFAULT_OPTIONS = GoldOptions()


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did: silver range consumed, changed and rewritten (app, source, day) rows."""

    mart: str
    silver_from: int
    silver_to: int
    bronze_version: int
    changed_days: int
    rewritten_rows: int


def refresh_mart(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart_name: str, options: GoldOptions = DEFAULT_OPTIONS
) -> RefreshStats:
    """Bring one incremental mart up to date with silver; idempotent and safe to rerun after a failure.

    The days to rewrite go in batches of ``options.batch_weeks`` ISO weeks, one transaction each; the
    watermark commits with the last one (a failure in between: the rerun rewrites those days again).

    The gold marts it reads (``reads`` in its ``mart.yaml``, e.g. ``active_person_days``) are brought up
    to the same silver version first (a no-op when the run already refreshed them).

    Raises:
        KeyError: unknown mart name.
        duckdb.Error: when the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    # Read silver's bronze watermark before silver's version: gold then never claims to cover
    # more bronze than the silver it read.
    bronze_version = lake.watermark(EVENTS.name, RAW_EVENTS.name)
    marts = options.marts
    return _refresh(con, lake, marts, marts[mart_name], options, bronze_version, table_version(lake, EVENTS))


def _refresh(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    marts: dict[str, Mart],
    mart: Mart,
    options: GoldOptions,
    bronze_version: int,
    silver_version: int,
) -> RefreshStats:
    for upstream in (marts[name] for name in mart.spec.reads if name in marts):
        current = gold_watermark(con, upstream.name)
        # Already refreshed by this run (the usual case: the assets run in dependency order).
        if current is None or (current.silver_version, current.definition) != (
            silver_version,
            _definition(mart_inputs(upstream, lake, options), options),
        ):
            _refresh(con, lake, marts, upstream, options, bronze_version, silver_version)
    inputs = mart_inputs(mart, lake, options)
    timezone = options.reporting_timezone
    definition = _definition(inputs, options)
    previous = gold_watermark(con, mart.name)
    # Built with other definitions (a funnel was edited): recompute from the start of silver.
    silver_from = previous.silver_version if previous and previous.definition == definition else -1

    # The links and first-seen times people_events and the marts read must cover the silver read here.
    refresh_identity(con, lake, silver_version)
    refresh_first_seen(con, lake, silver_version, timezone)

    # The changed rows stream through DuckDB (a first build's are the whole history): only their days stay.
    changed = _changed_days(
        con,
        _changed_rows(con, lake, mart, silver_from, silver_version),
        merged_days(con, silver_from, silver_version),
        timezone,
    )
    rewritten = 0
    with transaction(con):
        if silver_from == -1:
            # A first build or new definitions (funnels, time zone, session timeout): rows of days
            # the new definition no longer produces must go too, not only the days rewritten.
            for table in mart.tables:
                con.execute(load_sql("delete_all_rows", table))
        if changed.num_rows:
            rewritten = _rewrite(con, lake, mart, inputs, options, silver_version, changed)
        set_gold_watermark(con, mart.name, GoldWatermark(silver_version, bronze_version, definition))
    log.info(
        "%s: silver (%d, %d] touched %d days, rewrote %d rows",
        mart.name,
        silver_from,
        silver_version,
        changed.num_rows,
        rewritten,
    )
    return RefreshStats(mart.name, silver_from, silver_version, bronze_version, changed.num_rows, rewritten)


def _definition(inputs: MartInputs, options: GoldOptions) -> str:
    """The fingerprint kept with a mart's watermark: its inputs' definition and the reporting zone.

    Days in another reporting zone are other days: a new zone recomputes the mart (UTC, the
    default, keeps the fingerprints of warehouses built before the setting existed).
    """
    timezone = options.reporting_timezone
    return inputs.definition if timezone == "UTC" else f"{inputs.definition}|reporting_timezone={timezone}"


def _changed_rows(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, silver_from: int, silver_version: int
) -> pa.RecordBatchReader:
    """(app, source, timestamp) of the silver rows inserted or deleted in (silver_from, silver_version],
    streamed (a first build's are the whole history).

    Deletes too: a reprocessed range (pipelines.reprocess.reprocess) may lose rows on some days. Plus,
    for marts that count new people, the days a first visit moved away from (none of their events changed).
    """
    columns = ["app", "source", "timestamp"]
    schema = pa.schema([EVENTS.schema.field(name) for name in columns])
    feed = change_stream(lake, EVENTS, silver_from, silver_version, change_types=("insert", "delete"), columns=columns)
    first_seen = mart.spec.refresh.first_seen
    moves = first_seen_moves(con, silver_from, silver_version).cast(schema) if first_seen else schema.empty_table()
    return pa.RecordBatchReader.from_batches(
        schema, itertools.chain((batch.select(columns) for batch in feed), moves.to_batches())
    )


def _changed_days(
    con: duckdb.DuckDBPyConnection, changes: pa.RecordBatchReader, merged: pa.Table, timezone: str
) -> pa.Table:
    """The reporting days (app, source, day) that changed silver rows and identity merges touch."""
    with registered(con, {"changed_rows": changes, "merged_days": merged}):
        return con.sql(load_sql("select_changed_days"), params={"timezone": timezone}).to_arrow_table()


def _rewrite(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    mart: Mart,
    inputs: MartInputs,
    options: GoldOptions,
    silver_version: int,
    changed: pa.Table,
) -> int:
    refresh = mart.spec.refresh
    views = {
        "changed_days": changed,
        "reporting_settings": pa.table({"timezone": [options.reporting_timezone]}),
        **inputs.tables,
    }
    with registered(con, views):
        refresh_days = con.sql(
            load_sql("select_refresh_days", mart.name),
            params={
                "window_days": refresh.window_days,
                "lookback_days": inputs.lookback_days,
                "whole_month": refresh.calendar == "month",
                "whole_week": refresh.calendar == "week",
                "fill_spine": refresh.fill_spine,
            },
        ).to_arrow_table()
        for index, batch in enumerate(week_batches(refresh_days, options.batch_weeks)):
            if index:
                # Commit each batch: a transaction holds its changes in memory until it commits.
                # The watermark moves with the last batch, so a failure in between leaves it where
                # it was and the rerun rewrites these days again.
                con.commit()
                con.begin()
            _rewrite_batch(con, lake, mart, inputs, silver_version, batch, options.reporting_timezone)
        return refresh_days.num_rows


def _rewrite_batch(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    mart: Mart,
    inputs: MartInputs,
    silver_version: int,
    refresh_days: pa.Table,
    timezone: str,
) -> None:
    refresh = mart.spec.refresh
    con.register("refresh_days", refresh_days)
    read_days = refresh_days
    if refresh.counts_from_state:
        # The calendar period of its counts: MAU's month, else the ISO week (WAU, active_person_weeks).
        period = "month" if refresh.calendar == "month" else "week"
        refresh_days = con.sql(load_sql("select_state_days"), params={"period": period}).to_arrow_table()
        con.register("refresh_days", refresh_days)
        read_days = refresh_days.filter(refresh_days["reads_window"])
    if refresh.partial_days:
        refresh_days = con.sql(load_sql("select_partial_days")).to_arrow_table()
        con.register("refresh_days", refresh_days)
    scan_from, scan_to = scan_range(mart, inputs, read_days, pc.min(refresh_days["day"]).as_py())
    # Scan only the partitions the refreshed windows can read: reporting days map to the UTC
    # partitions (event_date) of the same day, and the next and previous one in other zones.
    if refresh.reads_events:
        pad = timedelta(days=0 if timezone == "UTC" else 1)
        partitions = (("event_date", ">=", scan_from - pad), ("event_date", "<=", scan_to + pad))
        con.register("silver_events", lake.dataset(EVENTS, silver_version, files=partitions))
        con.execute(load_sql("create_people_events"))
    if mart.has("macros.sql"):
        con.execute(mart.sql("macros"))
    if refresh.keeps_rows:
        con.execute(load_sql("create_previous_rows", mart.name))
    if refresh.partial_days:
        con.execute(mart.sql("delete"), inputs.params)
    else:
        con.execute(load_sql("delete_refresh_days", mart.name))
    con.execute(_insert_sql(mart), {"first_day": scan_from, "last_day": scan_to, **inputs.params})
    if mart.spec.state:
        con.execute(mart.sql("maintain"))
    # Row-level lineage: the silver version each rewritten row was computed from.
    con.execute(load_sql("mark_refreshed_rows", mart.name), {"silver_version": silver_version})
    # Not in a finally: after a failure the transaction is aborted, its rollback drops what the batch
    # created, and any statement now (even an unregister) would fail and hide the error.
    con.execute("drop table if exists previous_rows")
    con.execute("drop view if exists people_events")
    con.execute("drop view if exists resolved_events")
    for name in ("refresh_days", "silver_events"):
        con.unregister(name)


def _insert_sql(mart: Mart) -> str:
    """The mart's insert: its folder's ``insert.sql``, or the shared model its ``mart.yaml`` names."""
    model = mart.spec.insert
    if model is None:
        return mart.sql("insert")
    return load_sql(f"insert_{model.model}", mart.name, **model.columns)


def table_version(lake: Lake, table: TableDef) -> int:
    """The table's current Delta version, -1 when it does not exist yet."""
    version = lake.version(table)
    return -1 if version is None else version
