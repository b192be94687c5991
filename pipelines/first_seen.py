"""When each person was first active: the state behind new vs returning people.

``person_first_seen`` holds, per app, source and person (``people_events``'s ``person_id``: identity
stitched, bots excluded), the earliest event time seen (UTC). It is advanced once per silver version
for every mart, like identity links: the new silver rows give each of their people a candidate, and a
link made in those versions gives its person the alias's first_seen (the anonymous history the person
inherits). Only an earlier candidate replaces the stored value; the value it replaced is recorded in
``first_seen_moves``, because that day loses a new person: :func:`first_seen_moves` returns those
times so the marts that count new people rewrite their days (a late event or an identity merge changes a past day's new
people without touching that day's events).

A first_seen never moves later: silver reprocessing that removes a person's earliest events leaves
it (the people still existed then). With one exception: a rescrub that fills silver's asset flag in
(:mod:`pipelines.rescrub`) turns rows that counted as activity into static-asset requests, which never
count. At the silver version the rescrub's records are tied to, :func:`recheck_first_seen` gives the
people whose first_seen is the time of their earliest asset request their first counted activity
instead (later, or none: the person goes), and both days of each change are recorded as moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.gold import GoldWatermark, gold_watermark, load_sql, registered, set_gold_watermark, transaction
from warehouse.lake.history import ChangeFeed, FeedSource
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, PERSON_FIRST_SEEN, RAW_EVENTS

log = logging.getLogger(__name__)

#: The columns person resolution reads; the people views' other columns are filled with nulls.
_COLUMNS = ["app", "source", "timestamp", "user_id", "anonymous_id", "session_id", "is_bot", "is_asset"]


def _people_rows(feed: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """Silver-shaped rows (every column of ``events``) from a change feed stream of :data:`_COLUMNS`,
    batch by batch (the other columns null)."""

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in feed:
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column(field.name) if field.name in _COLUMNS else pa.nulls(batch.num_rows, field.type)
                    for field in EVENTS.schema
                ],
                schema=EVENTS.schema,
            )

    return pa.RecordBatchReader.from_batches(EVENTS.schema, batches())


def _feed(lake: Lake, silver_from: int, silver_version: int, feeds: FeedSource | None) -> ChangeFeed:
    return feeds(silver_from) if feeds else ChangeFeed(lake, EVENTS, silver_from, silver_version)


def refresh_first_seen(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    silver_version: int,
    timezone: str = "UTC",
    feeds: FeedSource | None = None,
) -> int:
    """Bring ``person_first_seen`` up to ``silver_version``; returns how many first_seen moved earlier.

    ``timezone``: the reporting zone (IANA name) people's days are counted in. ``feeds``: silver's
    change feed from a version to ``silver_version``, shared with the run's other readers (default:
    read here).

    Reads identity links: call :func:`pipelines.identity.refresh_identity` first. Commits its own
    transaction (shared state; idempotent, a no-op when already at ``silver_version``).

    Raises:
        duckdb.Error: when the SQL fails (rolled back, watermark unchanged).
    """
    previous = gold_watermark(con, PERSON_FIRST_SEEN)
    silver_from = previous.silver_version if previous else -1
    if silver_version <= silver_from:
        return 0
    views = {
        # Without rows a later erasure of the range deleted: an erased person must not come back.
        "silver_events": _people_rows(_feed(lake, silver_from, silver_version, feeds).read_surviving(_COLUMNS)),
        "reporting_settings": pa.table({"timezone": [timezone]}),
    }
    try:
        with registered(con, views):
            con.execute(load_sql("create_people_events"))
            with transaction(con):
                candidates = con.sql(
                    load_sql("select_first_seen_candidates"),
                    params={"after_version": silver_from, "until_version": silver_version},
                ).to_arrow_table()
                with registered(con, {"first_seen_candidates": candidates}):
                    moves = con.execute(
                        load_sql("insert_first_seen_moves"), {"silver_version": silver_version}
                    ).fetchall()
                    con.execute(load_sql("upsert_person_first_seen"), {"silver_version": silver_version})
                rechecked = recheck_first_seen(con, lake, silver_from, silver_version)
                set_gold_watermark(
                    con, PERSON_FIRST_SEEN, GoldWatermark(silver_version, lake.watermark(EVENTS.name, RAW_EVENTS.name))
                )
    finally:
        con.execute("drop view if exists people_events")
        con.execute("drop view if exists resolved_events")
    moved = int(moves[0][0]) if moves else 0
    log.info(
        "first seen: silver (%d, %d], %d people, %d moved earlier, %d rechecked after a rescrub",
        silver_from,
        silver_version,
        candidates.num_rows,
        moved,
        rechecked,
    )
    return moved


def recheck_first_seen(con: duckdb.DuckDBPyConnection, lake: Lake, silver_from: int, silver_version: int) -> int:
    """After a rescrub (its days recorded at a silver version in ``(silver_from, silver_version]``):
    the people whose stored first_seen is their earliest static-asset request get their earliest
    counted activity in silver at ``silver_version`` (both tiers) instead, or leave
    ``person_first_seen`` when they have none; each change records its old and new time in
    ``first_seen_moves``. Returns how many first_seen changed. A no-op on a first build and when no
    rescrub is in the range.

    In the caller's transaction; ``people_events`` is redefined (the caller drops it). Reads silver's
    asset rows, then the rechecked people's rows: once per rescrub, not per micro-batch.
    """
    if silver_from < 0:
        return 0
    versions = {"after_version": silver_from, "until_version": silver_version}
    ((rescrubbed,),) = con.execute(load_sql("select_rescrubs"), versions).fetchall()
    if not rescrubbed:
        return 0
    silver = lake.dataset(EVENTS, silver_version)
    # Silver's asset requests presented as activity, so that people_events resolves them to people
    # exactly as it resolves the marts' activity.
    assets = silver.scanner(columns=_COLUMNS, filter=pc.field("is_asset")).to_reader()
    activity = pa.RecordBatchReader.from_batches(
        assets.schema,
        (
            batch.set_column(_COLUMNS.index("is_asset"), "is_asset", pa.repeat(False, batch.num_rows))
            for batch in assets
        ),
    )
    con.register("silver_events", _people_rows(activity))
    con.execute(load_sql("create_people_events"))
    rechecks = con.sql(load_sql("select_first_seen_rechecks")).to_arrow_table()
    if not rechecks.num_rows:
        return 0
    con.register("silver_events", silver)
    con.execute(load_sql("create_people_events"))
    with registered(con, {"first_seen_rechecks": rechecks}):
        rechecked = con.sql(load_sql("select_first_seen_rechecked")).to_arrow_table()
    changed = rechecked.filter(
        pc.invert(pc.fill_null(pc.equal(rechecked["first_seen"], rechecked["previous_first_seen"]), False))
    )
    with registered(con, {"first_seen_rechecked": changed}):
        con.execute(load_sql("insert_first_seen_recheck_moves"), {"silver_version": silver_version})
        con.execute(load_sql("update_rechecked_first_seen"), {"silver_version": silver_version})
    log.info("first seen: %d people rechecked after a rescrub, %d changed", rechecks.num_rows, changed.num_rows)
    return changed.num_rows


def first_seen_moves(con: duckdb.DuckDBPyConnection, after_version: int, until_version: int) -> pa.Table:
    """``(app, source, timestamp)``: first_seen values replaced in silver versions
    ``(after_version, until_version]`` (UTC), whose days lost a new person."""
    return con.sql(
        load_sql("select_first_seen_moves"), params={"after_version": after_version, "until_version": until_version}
    ).to_arrow_table()
