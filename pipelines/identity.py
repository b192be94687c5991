"""Identity stitching: link anonymous ids and session ids to the user id of their person.

Metrics count people, not devices: every mart reads ``person_id`` from the ``resolved_events``
view (``warehouse/sql/create_people_events.sql``), which maps an event without a user id to the
person its anonymous id (else session id) is linked to. Links come from silver rows carrying both
a user id and an anonymous or session id (an ``identify`` call, any event sent after login) and
from ``alias`` events (``previousId`` → ``userId``); the first link of an alias wins
(``warehouse/sql/insert_identity_links.sql``), as in PostHog's person merging.

A merge changes the past: the days an alias was active without a user id
(``anonymous_days``) now count another person. :func:`merged_days` returns them so each mart
rewrites those days — an earlier anonymous session is attributed to the person once identified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from warehouse.gold import GoldWatermark, gold_watermark, load_sql, registered, set_gold_watermark, transaction
from warehouse.lake.history import ChangeFeed, FeedSource
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, IDENTITY_LINKS, RAW_EVENTS

log = logging.getLogger(__name__)

_COLUMNS = ["app", "source", "event_date", "event_type", "timestamp", "user_id", "anonymous_id", "session_id"]


@dataclass(frozen=True)
class IdentityStats:
    """One identity refresh: the silver range read (``(silver_from, silver_to]``) and the new links."""

    silver_from: int
    silver_to: int
    new_links: int


def refresh_identity(
    con: duckdb.DuckDBPyConnection, lake: Lake, silver_version: int, feeds: FeedSource | None = None
) -> IdentityStats:
    """Bring ``identity_links`` and ``anonymous_days`` up to ``silver_version``; idempotent.

    ``feeds``: silver's change feed from a version to ``silver_version``, shared with the run's other
    readers (default: read here).

    Commits its own transaction (the state is shared by every mart; a mart that fails later
    leaves it valid). Marts call it first, so the links they read cover the silver they read.

    Raises:
        duckdb.Error: when the SQL fails (rolled back, watermark unchanged).
    """
    previous = gold_watermark(con, IDENTITY_LINKS)
    silver_from = previous.silver_version if previous else -1
    if silver_version <= silver_from:
        return IdentityStats(silver_from, silver_from, 0)
    # Only the columns links need, streamed; properties (previousId) only of alias events (few rows).
    feed = feeds(silver_from) if feeds else ChangeFeed(lake, EVENTS, silver_from, silver_version)
    views = {
        # Without rows a later erasure of the range deleted: an erased person's links must not come back.
        "silver_feed": feed.read_surviving(_COLUMNS),
        "new_aliases": feed.read_surviving([*_COLUMNS, "properties"], equals=("event_type", "alias")).read_all(),
    }
    try:
        with registered(con, views), transaction(con):
            before = con.table(IDENTITY_LINKS).aggregate("count(*)").fetchall()[0][0]
            con.execute(load_sql("create_new_silver_identities"))
            con.execute(load_sql("insert_anonymous_days"))
            con.execute(load_sql("insert_identity_links"))
            after = con.table(IDENTITY_LINKS).aggregate("count(*)").fetchall()[0][0]
            set_gold_watermark(
                con, IDENTITY_LINKS, GoldWatermark(silver_version, lake.watermark(EVENTS.name, RAW_EVENTS.name))
            )
    finally:
        con.execute("drop table if exists new_silver")
    log.info("identity: silver (%d, %d] added %d links", silver_from, silver_version, after - before)
    return IdentityStats(silver_from, silver_version, int(after - before))


def merged_days(con: duckdb.DuckDBPyConnection, after_version: int, until_version: int) -> pa.Table:
    """``(app, source, day)`` rows whose people changed by links made in silver versions
    ``(after_version, until_version]``: the days their aliases were active without a user id."""
    return con.sql(
        load_sql("select_merged_days"), params={"after_version": after_version, "until_version": until_version}
    ).to_arrow_table()
