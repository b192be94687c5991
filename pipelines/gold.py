"""Incremental refresh of the gold marts in DuckDB from silver's change data feed.

Each mart keeps a watermark (the silver version it consumed). A run reads the silver rows
inserted since then, derives the (app, source, day) triples they touch, expands them to the days whose
value can change (``select_refresh_days.sql``), and rewrites exactly those rows — delete and
insert in one transaction, so a rerun gives the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
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
from warehouse.lake.history import ChangeFeed
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, TableDef
from warehouse.marts import Mart

log = logging.getLogger(__name__)

#: The settings' defaults (UTC days, 4-week batches, 30-minute sessions, the shipped marts).
DEFAULT_OPTIONS = GoldOptions()


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did: silver range consumed, changed and rewritten (app, source, day) rows,
    and of the changed days those its ``append.sql`` added the micro-batch to (not recomputed)."""

    mart: str
    silver_from: int
    silver_to: int
    bronze_version: int
    changed_days: int
    rewritten_rows: int
    appended_days: int = 0


class MicroBatch:
    """What the gold refreshes of one run read once and share (the gold step of
    :mod:`pipelines.defs.gold` refreshes every mart with one): the silver version they bring gold to
    and the bronze version that silver covers, silver's change feed per start version
    (:class:`warehouse.lake.history.ChangeFeed`: one storage read for identity links, first-seen
    times, every mart's changed days and data quality), the (app, source, day, event_type) those
    changes touch, and each mart's inputs (:func:`pipelines.mart_inputs.mart_inputs`).

    ``rewritten``: rows each mart refreshed with it rewrote (mart name → rows), for the marts
    that read it (a ``kind: rebuild`` mart is skipped when nothing it reads changed).
    """

    def __init__(self, lake: Lake, options: GoldOptions = DEFAULT_OPTIONS) -> None:
        self.lake = lake
        self.options = options
        # Read silver's bronze watermark before silver's version: gold then never claims to cover
        # more bronze than the silver it read.
        self.bronze_version = lake.watermark(EVENTS.name, RAW_EVENTS.name)
        self.silver_version = table_version(lake, EVENTS)
        self.rewritten: dict[str, int] = {}
        self._feeds: dict[int, ChangeFeed] = {}
        self._event_days: dict[int, pa.Table] = {}
        self._inputs: dict[str, MartInputs] = {}

    def feed(self, after_version: int) -> ChangeFeed:
        """Silver's change feed over ``(after_version, silver_version]``, shared."""
        if after_version not in self._feeds:
            self._feeds[after_version] = ChangeFeed(self.lake, EVENTS, after_version, self.silver_version)
        return self._feeds[after_version]

    def inputs(self, mart: Mart) -> MartInputs:
        """``mart``'s inputs (definitions files and silver tables read once per run)."""
        if mart.name not in self._inputs:
            self._inputs[mart.name] = mart_inputs(mart, self.lake, self.options)
        return self._inputs[mart.name]

    def event_days(self, con: duckdb.DuckDBPyConnection, after_version: int) -> pa.Table:
        """``(app, source, day, event_type)`` of the silver rows inserted or deleted in
        ``(after_version, silver_version]``, ``day`` in the reporting time zone; distinct.

        Deletes too: a reprocessed range (pipelines.reprocess.reprocess) may lose rows on some days.
        And the days recorded for these versions (``gold_recompute_days``: an erasure's, cold days
        included), as deleted rows.
        """
        if after_version not in self._event_days:
            rows = self.feed(after_version).read(["app", "source", "timestamp", "event_type"], ("insert", "delete"))
            with registered(con, {"changed_rows": rows}):
                changed = con.sql(
                    load_sql("select_changed_event_days"), params={"timezone": self.options.reporting_timezone}
                ).to_arrow_table()
            versions = {"after_version": after_version, "until_version": self.silver_version}
            recorded = con.sql(load_sql("select_recompute_days"), params=versions).to_arrow_table()
            self._event_days[after_version] = pa.concat_tables([changed, recorded.cast(changed.schema)])
        return self._event_days[after_version]


def refresh_mart(
    con: duckdb.DuckDBPyConnection, lake: Lake, mart_name: str, options: GoldOptions = DEFAULT_OPTIONS
) -> RefreshStats:
    """Bring one incremental mart up to date with silver on its own (:func:`refresh` with a
    :class:`MicroBatch` of its own); idempotent and safe to rerun after a failure.

    Raises:
        KeyError: unknown mart name.
        duckdb.Error: when the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    return refresh(con, MicroBatch(lake, options), options.marts[mart_name])


def refresh(con: duckdb.DuckDBPyConnection, batch: MicroBatch, mart: Mart) -> RefreshStats:
    """Bring the incremental ``mart`` up to ``batch``'s silver version; idempotent and safe to rerun.

    The days to rewrite go in batches of ``options.batch_weeks`` ISO weeks, one transaction each; the
    watermark commits with the last one (a failure in between: the rerun rewrites those days again).
    A mart none of whose days changed (no new rows of the event types it reads, ``event_types`` in
    its ``mart.yaml``, no identity merge, no moved first visit) only moves its watermark: nothing
    is rewritten, so nothing is validated.

    The gold marts it reads (``reads`` in its ``mart.yaml``, e.g. ``active_person_days``) are brought up
    to the same silver version first (a no-op when the run already refreshed them).

    Raises:
        duckdb.Error: when the SQL fails (the transaction is rolled back, watermark unchanged).
    """
    marts = batch.options.marts
    silver_version = batch.silver_version
    for upstream in (marts[name] for name in mart.spec.reads if name in marts):
        current = gold_watermark(con, upstream.name)
        # Already refreshed by this run (the usual case: the marts are refreshed in dependency order).
        if current is None or (current.silver_version, current.definition) != (
            silver_version,
            _definition(batch.inputs(upstream), batch.options),
        ):
            refresh(con, batch, upstream)
    inputs = batch.inputs(mart)
    definition = _definition(inputs, batch.options)
    previous = gold_watermark(con, mart.name)
    # Built with other definitions (a funnel was edited): recompute from the start of silver.
    silver_from = previous.silver_version if previous and previous.definition == definition else -1

    # The links and first-seen times people_events and the marts read must cover the silver read here.
    refresh_identity(con, batch.lake, silver_version, batch.feed)
    refresh_first_seen(con, batch.lake, silver_version, batch.options.reporting_timezone, batch.feed)

    changed = _changed_days(con, batch, mart, inputs, silver_from)
    inserted = batch.feed(silver_from).inserted() if silver_from >= 0 and mart.has("append.sql") else None
    appended = _appendable(con, mart, inputs, batch.options, changed, inserted)
    recomputed = changed.drop_columns(["appended"]).join(appended, ["app", "source", "day"], join_type="left anti")
    rewritten = 0
    with transaction(con):
        if silver_from == -1:
            # A first build or new definitions (funnels, time zone, session timeout): rows of days
            # the new definition no longer produces must go too, not only the days rewritten.
            for table in mart.tables:
                con.execute(load_sql("delete_all_rows", table))
        if recomputed.num_rows:
            rewritten = _rewrite(con, batch.lake, mart, inputs, batch.options, silver_version, recomputed)
        if appended.num_rows:
            assert inserted is not None
            rewritten += _append(con, mart, inputs, batch.options, silver_version, appended, inserted)
        set_gold_watermark(con, mart.name, GoldWatermark(silver_version, batch.bronze_version, definition))
    batch.rewritten[mart.name] = rewritten
    log.info(
        "%s: silver (%d, %d] touched %d days (%d appended to), rewrote %d rows",
        mart.name,
        silver_from,
        silver_version,
        changed.num_rows,
        appended.num_rows,
        rewritten,
    )
    return RefreshStats(
        mart.name, silver_from, silver_version, batch.bronze_version, changed.num_rows, rewritten, appended.num_rows
    )


def _definition(inputs: MartInputs, options: GoldOptions) -> str:
    """The fingerprint kept with a mart's watermark: its inputs' definition and the reporting zone.

    Days in another reporting zone are other days: a new zone recomputes the mart (UTC, the
    default, keeps the fingerprints of warehouses built before the setting existed).
    """
    timezone = options.reporting_timezone
    return inputs.definition if timezone == "UTC" else f"{inputs.definition}|reporting_timezone={timezone}"


def _changed_days(
    con: duckdb.DuckDBPyConnection, batch: MicroBatch, mart: Mart, inputs: MartInputs, silver_from: int
) -> pa.Table:
    """The reporting days (app, source, day, appended) whose ``mart`` rows may change after silver
    ``(silver_from, silver_version]``: the days of changed rows of the event types it reads (all when
    it names none), of identity merges and, for marts that count new people, of first visits that
    moved away (none of their events changed). ``appended``: the day's only change is inserted rows
    (``select_changed_days.sql``)."""
    event_days = batch.event_days(con, silver_from)
    if inputs.event_types is not None:
        event_days = event_days.filter(pc.is_in(event_days["event_type"], pa.array(sorted(inputs.event_types))))
    schema = pa.schema([EVENTS.schema.field(name) for name in ("app", "source", "timestamp")])
    first_seen = mart.spec.refresh.first_seen
    moves = first_seen_moves(con, silver_from, batch.silver_version) if first_seen else schema.empty_table()
    views = {
        "changed_event_days": event_days,
        "moved_first_visits": moves.cast(schema),
        "merged_days": merged_days(con, silver_from, batch.silver_version),
    }
    with registered(con, views):
        return con.sql(
            load_sql("select_changed_days"), params={"timezone": batch.options.reporting_timezone}
        ).to_arrow_table()


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


@contextmanager
def _over_inserted(
    con: duckdb.DuckDBPyConnection,
    mart: Mart,
    inputs: MartInputs,
    options: GoldOptions,
    days: pa.Table,
    inserted: pa.Table,
) -> Iterator[None]:
    """For the block: ``people_events``/``resolved_events`` over the silver rows a micro-batch
    ``inserted`` (only), ``refresh_days`` = ``days``, ``reporting_settings``, ``refresh_params`` (when
    the mart has parameters, e.g. ``timeout_s``: one row of them, as ``append.sql`` holds several
    statements, which take no bound parameters), the mart's input tables and its macros."""
    views: dict[str, object] = {
        "silver_events": inserted,
        "refresh_days": days,
        "reporting_settings": pa.table({"timezone": [options.reporting_timezone]}),
        **inputs.tables,
    }
    if inputs.params:
        views["refresh_params"] = pa.table({name: [value] for name, value in inputs.params.items()})
    with registered(con, views):
        con.execute(load_sql("create_people_events"))
        if mart.has("macros.sql"):
            con.execute(mart.sql("macros"))
        yield
        con.execute("drop view if exists people_events")
        con.execute("drop view if exists resolved_events")


def _appendable(
    con: duckdb.DuckDBPyConnection,
    mart: Mart,
    inputs: MartInputs,
    options: GoldOptions,
    changed: pa.Table,
    inserted: pa.Table | None,
) -> pa.Table:
    """The changed days (app, source, day) ``mart``'s ``append.sql`` adds the micro-batch to: none
    without one or when the micro-batch is not in memory (``inserted`` None: a first build, a large
    backlog); else the days whose only change is inserted rows, and of those, when the folder has a
    ``select_appendable.sql``, the days it accepts (sessions: every person's new events come after
    their sessions). A mart whose changed day reaches other days (``Refresh.appends`` false) adds to
    an (app, source) only when all its changed days can be: a day recomputed next door would read the
    same new events again."""
    days = changed.filter(changed["appended"]).drop_columns(["appended"])
    if inserted is None or not days.num_rows:
        return days.schema.empty_table()
    if mart.has("select_appendable.sql"):
        with _over_inserted(con, mart, inputs, options, days, inserted):
            days = con.sql(mart.sql("select_appendable")).to_arrow_table()
    if not mart.spec.refresh.appends:
        keys = ["app", "source"]
        recomputed = changed.select([*keys, "day"]).join(days, [*keys, "day"], join_type="left anti")
        days = days.join(recomputed.select(keys), keys, join_type="left anti")
    return days


def _append(
    con: duckdb.DuckDBPyConnection,
    mart: Mart,
    inputs: MartInputs,
    options: GoldOptions,
    silver_version: int,
    days: pa.Table,
    inserted: pa.Table,
) -> int:
    """Add the silver rows a micro-batch ``inserted`` on ``days`` (app, source, day; days whose only
    change is inserted rows, :func:`_appendable`) to ``mart``'s rows with its ``append.sql``, instead
    of recomputing those days from all their events: the cost follows the micro-batch, not the day
    (a day of the hot path holds every micro-batch since midnight). ``append.sql`` reads what
    :func:`_over_inserted` sets up and its state; it leaves ``silver_version`` null on the rows it
    wrote, stamped here (on ``days`` and the ``lookback_days`` before them: a session continued from
    the day before). Returns the number of days."""
    with _over_inserted(con, mart, inputs, options, days, inserted):
        con.execute(mart.sql("append"))
    with registered(con, {"refresh_days": days}):
        lookback = {"lookback_days": inputs.lookback_days}
        stamped = con.sql(load_sql("select_lookback_days"), params=lookback).to_arrow_table()
    with registered(con, {"refresh_days": stamped}):
        con.execute(load_sql("mark_refreshed_rows", mart.name), {"silver_version": silver_version})
    return days.num_rows


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
