"""A micro-batch that only adds events to a day is added to the marts' rows (their ``append.sql``)
instead of recomputing the day, and the marts hold exactly what a warehouse built from scratch holds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipelines.defs.gold import dependency_order
from pipelines.gold import MicroBatch, refresh
from tests.conftest import gold_options, silver_table
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS
from warehouse.marts import catalog

pytestmark = pytest.mark.integration

D1, D2 = date(2024, 3, 4), date(2024, 3, 5)
APPENDING = {name for name, mart in catalog().items() if mart.has("append.sql")}


def events(day: date, at: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Silver rows of ``day``, one minute apart from ``at`` (HH:MM UTC), each dict giving some columns."""
    hours, minutes = map(int, at.split(":"))
    start = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=UTC)
    return silver_table([{"timestamp": start + timedelta(minutes=i), **row} for i, row in enumerate(rows)])


def click(user: str | None, component: str, page: str = "https://a.example/p?x=1", **more: Any) -> dict[str, Any]:
    return {"event_type": "click", "user_id": user, "page_url": page, "properties": {"component": component}, **more}


def view(user: str | None, page: str, **more: Any) -> dict[str, Any]:
    return {"event_type": "page_view", "user_id": user, "page_url": page, **more}


def field(user: str, step: int, name: str) -> dict[str, Any]:
    return {"event_type": "form_field", "user_id": user, "properties": {"form": "signup", "step": step, "field": name}}


def submit(user: str) -> dict[str, Any]:
    return {"event_type": "form_submit", "user_id": user, "properties": {"form": "signup"}}


def error(user: str, line: int) -> dict[str, Any]:
    """An error of one group (its stack differs only in the line number)."""
    stack = f"TypeError: x is undefined\n    at f (https://a.example/app.js:{line}:7)"
    return {"event_type": "errors", "user_id": user, "properties": {"message": f"x {line}", "stackTrace": stack}}


BATCHES = [
    # D1 starts: three people, pages, components, a client session, a bot, an anonymous visitor
    pa.concat_tables(
        [
            events(D1, "09:00", [view("u1", "/home", platform="web"), view("u2", "/home", platform="ios")]),
            events(D1, "09:00", [click("u3", "buy", session_id="s-3"), view(None, "/home", anonymous_id="anon-1")]),
            events(D1, "09:02", [click("u1", "buy"), view("bot", "/", is_bot=True)]),
            events(D1, "09:03", [error("u3", 1), field("u3", 1, "email")]),
        ]
    ),
    # more of D1 (people seen and new; u1's and u3's sessions continue) and a new day D2
    pa.concat_tables(
        [
            events(D1, "09:20", [view("u1", "/home", platform="android"), click("u1", "buy"), click("u4", "cart")]),
            events(D1, "09:25", [{"event_type": "click", "user_id": "u2", "properties": {"selector": "#nav"}}]),
            events(D1, "09:30", [view("u3", "/cart", session_id="s-3"), view("u1", "/pricing")]),
            events(D1, "09:40", [error("u3", 2), error("u4", 3)]),
            events(D1, "09:45", [field("u3", 2, "password"), field("u4", 1, "email"), submit("u3")]),
            events(D2, "09:00", [view("u1", "/home"), click("u5", "buy"), error("u5", 4), field("u5", 1, "email")]),
        ]
    ),
    # anon-1 identifies as u2 on D2: D1 (its anonymous day) is recomputed, D2 appended to
    events(
        D2,
        "10:00",
        [
            {"event_type": "identify", "user_id": "u2", "anonymous_id": "anon-1"},
            view("u2", "/pricing"),
            error("u5", 5),
            field("u5", 2, "password"),
        ],
    ),
    # D1 again after the merge: only added events, an hour later (new sessions); u2 is not in them, as
    # u2's events of D2 are later: sessions would recompute the day
    pa.concat_tables(
        [
            events(D1, "11:00", [view("u6", "/home"), click("u6", "buy"), view(None, "/home", anonymous_id="anon-9")]),
            events(D1, "11:05", [error("u6", 6), field("u6", 1, "email")]),
        ]
    ),
    # and ten minutes later (their sessions continue)
    events(
        D1,
        "11:10",
        [view("u6", "/home"), view(None, "/cart", anonymous_id="anon-9"), error("u3", 7), field("u6", 3, "name")],
    ),
    # a late event of 08:00 on D1: sessions recompute the day, the other marts add it
    events(D1, "08:00", [view("u1", "/home"), click("u7", "buy"), error("u7", 8), field("u7", 1, "email")]),
]


def tables_of(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the incremental marts and their states, rows sorted, lineage left out."""
    names = [table for mart in catalog().values() if mart.spec.kind == "incremental" for table in mart.tables]
    rows = {}
    for table in names:
        columns = [
            c
            for (c,) in con.execute(f"select column_name from duckdb_columns() where table_name = '{table}'").fetchall()
        ]
        select = ", ".join(c for c in columns if c != "silver_version")
        rows[table] = con.execute(f"select {select} from {table} order by all").fetchall()  # noqa: S608
    return rows


def refresh_all(con: Any, lake: Lake) -> dict[str, int]:
    """Refresh every incremental mart with one micro-batch; appended days by mart."""
    batch = MicroBatch(lake, gold_options())
    marts = [mart for mart in dependency_order(catalog()) if mart.spec.kind == "incremental"]
    return {mart.name: refresh(con, batch, mart).appended_days for mart in marts}


def test_micro_batches_added_to_a_day_give_the_rows_of_a_rebuild(tmp_path: Path) -> None:
    assert {"daily_event_counts", "daily_page_views", "component_interactions", "active_users_breakdown"} <= APPENDING
    assert {"active_person_days", "sessions", "error_summary", "form_progress"} <= APPENDING
    lake = Lake(str(tmp_path / "lake"))
    con = gold.connect(tmp_path / "warehouse.duckdb")
    appended = []
    for rows in BATCHES:
        lake.append(EVENTS, rows)
        appended.append(refresh_all(con, lake))

    # The first batch builds gold (nothing to add to); the second adds to D1 and D2; the merge
    # recomputes D1 and adds to D2 (sessions: recomputes both, as a session may cross midnight); the
    # next two add to D1; the late event is added to D1 but for sessions, which recompute it.
    sessions = {"sessions"}
    assert all(days == 0 for days in appended[0].values())
    assert {mart for mart, days in appended[1].items() if days == 2} == APPENDING
    assert {mart for mart, days in appended[2].items() if days == 1} == APPENDING - sessions
    assert appended[2]["sessions"] == 0
    assert {mart for mart, days in appended[3].items() if days == 1} == APPENDING
    assert {mart for mart, days in appended[4].items() if days == 1} == APPENDING
    assert {mart for mart, days in appended[5].items() if days == 1} == APPENDING - sessions
    assert appended[5]["sessions"] == 0

    rebuilt = gold.connect(tmp_path / "rebuilt.duckdb")
    refresh_all(rebuilt, lake)
    built, expected = tables_of(con), tables_of(rebuilt)
    assert built == expected
    # D1's error group: 6 errors of u3, u4, u6 and u7, from 08:02 (u7's late one) to 11:12 (u3's)
    errors = (
        "select events, people, strftime(first_seen_at, '%H:%M'), strftime(last_seen_at, '%H:%M') from error_summary"
    )
    assert con.execute(errors + " where day = ?", [D1]).fetchall() == [(6, 4, "08:02", "11:12")]
    # D1's signup form: u3 (to step 2, submitted), u4 and u7 (step 1), u6 (step 3, skipping step 2)
    form = (
        "select step, field, people_started, people_reached, people_furthest, people_abandoned, people_submitted"
        " from form_progress where day = ? order by step"
    )
    assert con.execute(form, [D1]).fetchall() == [
        (1, "email", 4, 4, 2, 2, 0),
        (2, "password", 4, 2, 1, 0, 1),
        (3, "name", 4, 1, 1, 1, 0),
    ]
    # The numbers themselves, for one row each: D1's home page viewed 8 times by u1, u2 (anon-1), u6, anon-9.
    views = "select views, people from daily_page_views where day = ? and page_url = '/home'"
    assert con.execute(views, [D1]).fetchall() == [(8, 4)]
    clicks = "select events, people from component_interactions where day = ? and component = 'buy'"
    assert con.execute(clicks, [D1]).fetchall() == [(5, 4)]
    platforms = (
        "select value, active_users from active_users_breakdown where day = ? and breakdown = 'platform' order by 1"
    )
    assert con.execute(platforms, [D1]).fetchall() == [("(unknown)", 7), ("android", 1), ("ios", 1), ("web", 1)]
    # The week of D1 holds everyone active in it, D2's people too, however its days were refreshed
    # (a week refreshed for its Monday alone once lost u5, active only on Tuesday D2).
    week = "select count(*) from active_person_weeks where day = ?"
    assert con.execute(week, [D1]).fetchall() == [(8,)]
    # u1's visits of D1: the late 08:00 view alone (an hour before the next), then 09:00-09:31 continued
    # by the second micro-batch: 5 events, 3 page views, from the home page to pricing.
    visits = (
        "select strftime(started_at, '%H:%M'), events, page_views, entry_page, exit_page from sessions"
        " where person_id = 'u1' and day = ? order by started_at"
    )
    assert con.execute(visits, [D1]).fetchall() == [
        ("08:00", 1, 1, "/home", "/home"),
        ("09:00", 5, 3, "/home", "/pricing"),
    ]
    # anon-9's visit: started by the fourth micro-batch at 11:02, continued by the fifth at 11:11
    anon = "select events, page_views, entry_page, exit_page, duration_s from sessions where person_id = 'anon-9'"
    assert con.execute(anon).fetchall() == [(2, 2, "/home", "/cart", 540.0)]
    con.close()
    rebuilt.close()
