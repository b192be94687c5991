"""Identity stitching and incremental rewrites, proven by what the marts' rows say about themselves.

Each rewritten gold row carries the silver version it was computed from (``silver_version``);
the tests read which rows changed from the tables, not from a refresh counter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import ApiServer, Env, gold_options, materialize_all, silver_table
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS

pytestmark = pytest.mark.integration

_ids = iter(range(1_000_000))


def silver(
    rows: list[tuple[date, str | None, str | None, str | None]],
    event_type: str = "page_view",
    properties: object = None,
) -> pa.Table:
    """(day, user_id, anonymous_id, session_id) → silver rows of app 'a' at noon UTC."""
    return silver_table(
        [
            {"timestamp": datetime(day.year, day.month, day.day, 12, tzinfo=UTC), "event_type": event_type}
            | {"user_id": user, "anonymous_id": anonymous, "session_id": session, "properties": properties or {}}
            for day, user, anonymous, session in rows
        ]
    )


D1, D2, D3, D4 = (date(2024, 3, d) for d in (4, 5, 6, 7))


def stamped(con: duckdb.DuckDBPyConnection, mart: str, version: int) -> set[date]:
    """Days whose rows of ``mart`` were computed at silver ``version`` (rewritten by that refresh)."""
    return {
        day for (day,) in con.execute(f"select distinct day from {mart} where silver_version = ?", [version]).fetchall()
    }


def test_identify_merges_the_anonymous_past_and_rewrites_exactly_those_days(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        silver(
            [
                (D1, None, "anon-1", None),  # anon-1 browses before signing up…
                (D1, "u1", None, None),  # …while u1 is signed in elsewhere (another device)
                (D2, "u2", None, None),
                (D3, None, None, "s-9"),  # a session without a user yet
                (D3, None, "anon-2", None),
            ]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    for mart in ("daily_active_users", "daily_event_counts"):
        refresh_mart(con, lake, mart, gold_options())
    dau = "select day, dau from daily_active_users order by day"
    assert con.execute(dau).fetchall() == [(D1, 2), (D2, 1), (D3, 2)]

    # D4: anon-1 identifies as u1; u2 logs in within session s-9; anon-2 is claimed by u3 and then,
    # later the same day, by u4 (first link wins: a shared device does not merge two users)
    version = lake.append(
        EVENTS,
        pa.concat_tables(
            [
                silver([(D4, "u1", "anon-1", None)], event_type="identify"),
                silver([(D4, "u2", None, "s-9")]),
                silver([(D4, "u3", "anon-2", None)]),
            ]
        ),
    )
    late_claim = lake.append(
        EVENTS, silver([(D4, "u4", None, None)], event_type="alias", properties={"previousId": "anon-2"})
    )
    for mart in ("daily_active_users", "daily_event_counts"):
        refresh_mart(con, lake, mart, gold_options())
    # D1 now counts u1 once; D3's session and anon-2 are u2 and u3
    assert con.execute(dau).fetchall() == [(D1, 1), (D2, 1), (D3, 2), (D4, 4)]
    links = con.execute(
        "select alias_id, person_id, linked_by, silver_version from identity_links order by 1"
    ).fetchall()
    assert links == [
        ("anon-1", "u1", "anonymous_id", version),
        ("anon-2", "u3", "anonymous_id", version),
        ("s-9", "u2", "session_id", version),
    ]
    # rewritten: D4 (new events) and the days the linked aliases were anonymous, D1 and D3; D2 untouched
    assert stamped(con, "daily_active_users", late_claim) == {D1, D3, D4}
    assert stamped(con, "daily_event_counts", late_claim) == {D1, D3, D4}
    assert con.execute("select day from daily_active_users where silver_version < ?", [version]).fetchall() == [(D2,)]
    people = con.execute("select day, event_type, people from daily_event_counts order by all").fetchall()
    assert people == [
        (D1, "page_view", 1),
        (D2, "page_view", 1),
        (D3, "page_view", 2),
        (D4, "alias", 1),
        (D4, "identify", 1),
        (D4, "page_view", 2),
    ]
    con.close()


def test_a_late_event_rewrites_its_day_and_the_windows_that_contain_it(tmp_path: Path) -> None:
    start = date(2024, 1, 1)
    lake = Lake(str(tmp_path / "lake"))
    lake.append(EVENTS, silver([(start + timedelta(days=i), f"u{i % 7}", None, None) for i in range(0, 91, 2)]))
    con = gold.connect(tmp_path / "w.duckdb")
    marts = ("daily_active_users", "weekly_active_users", "monthly_active_users")
    for mart in marts:
        refresh_mart(con, lake, mart, gold_options())
    before = {
        mart: con.execute(f"select * exclude (silver_version) from {mart} order by all").fetchall() for mart in marts
    }

    late = date(2024, 2, 14)  # a Wednesday; day 44, odd, so nobody was active on it yet
    version = lake.append(EVENTS, silver([(late, "u-late", None, None)]))
    for mart in marts:
        refresh_mart(con, lake, mart, gold_options())
    last = start + timedelta(days=90)

    def span(first: date, final: date) -> set[date]:
        return {first + timedelta(days=i) for i in range((min(final, last) - first).days + 1)}

    # DAU: the day itself. WAU: the 7 rolling windows that hold it and, for the calendar-week value,
    # the 6 days before it (which cover its ISO week wherever the day falls). MAU: the 30 rolling
    # windows, and the whole calendar month.
    assert stamped(con, "daily_active_users", version) == {late}
    assert stamped(con, "weekly_active_users", version) == span(late - timedelta(days=6), late + timedelta(days=6))
    assert stamped(con, "monthly_active_users", version) == span(date(2024, 2, 1), late + timedelta(days=29))
    # the other rows are the very rows written before
    for mart in marts:
        kept = con.execute(
            f"select * exclude (silver_version) from {mart} where silver_version < ? order by all", [version]
        )
        assert set(kept.fetchall()) <= set(before[mart])
    con.close()


def test_segment_identify_through_the_api_stitches_the_anonymous_visit(api: ApiServer, env: Env) -> None:
    visit = {"type": "page", "anonymousId": "anon-7", "timestamp": "2024-05-01T09:00:00Z", "messageId": "m1"}
    visit["context"] = {"app": {"name": "seg"}, "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"}
    assert api.post("/v1/batch", json={"batch": [visit]}).status_code == 200
    materialize_all(env)
    assert rows(env, "select day, dau from daily_active_users where app = 'seg'") == [(date(2024, 5, 1), 1)]
    people = "select person_id, count(*) from active_person_weeks where app = 'seg' group by all"
    assert rows(env, people) == [("anon-7", 1)]

    # two days later the visitor signs up: identify links anon-7 to the user; a track as the user
    later = {"context": visit["context"], "timestamp": "2024-05-03T10:00:00Z"}
    batch = [
        {"type": "identify", "userId": "user-7", "anonymousId": "anon-7", "messageId": "m2", **later},
        {"type": "track", "event": "Signed Up", "userId": "user-7", "messageId": "m3", **later},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    materialize_all(env)
    # the first visit is now the user's: one person over the week, not two
    assert rows(env, people) == [("user-7", 1)]
    assert rows(env, "select wau_calendar_week from weekly_active_users where app = 'seg' and day = '2024-05-03'") == [
        (1,)
    ]
    assert rows(env, "select cohort_people from retention_cohorts where app = 'seg' and week_number = 0") == [(1,)]


def rows(env: Env, sql: str) -> list[tuple]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_blank_ids_are_no_ids(tmp_path: Path) -> None:
    # Regression (hostile review): a client sending session "" made strangers one person.
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        pa.concat_tables(
            [silver([(D1, "alice", "devA", "")]), silver([(D1, None, "devB", " ")]), silver([(D2, None, "devC", "")])]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute("select day, dau from daily_active_users order by day").fetchall() == [(D1, 2), (D2, 1)]
    assert con.execute("select alias_id, person_id from identity_links").fetchall() == [("devA", "alice")]
    con.close()


def test_counts_from_last_active_state_match_a_rebuild_through_merges_late_days_and_deletes(tmp_path: Path) -> None:
    # WAU, MAU and active_person_weeks count the latest day's windows, week and month from
    # person_last_active instead of their person-days. After each change the incremental warehouse
    # must hold what a warehouse built from scratch on the same silver holds, and the state must be
    # each person's last person-day.
    start = date(2024, 1, 1)
    lake = Lake(str(tmp_path / "lake"))
    history = [(start + timedelta(days=i), f"u{i % 5}", None, None) for i in range(0, 24, 3)]
    lake.append(EVENTS, silver([*history, (date(2024, 1, 25), None, "anon-1", None)]))
    incremental = gold.connect(tmp_path / "incremental.duckdb")
    marts = ("weekly_active_users", "monthly_active_users", "active_person_weeks")

    def refresh(con: duckdb.DuckDBPyConnection) -> None:
        for mart in marts:
            refresh_mart(con, lake, mart, gold_options())

    def contents(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
        tables = {
            mart: con.execute(f"select * exclude (silver_version) from {mart} order by all").fetchall()
            for mart in marts
        }
        tables["person_last_active"] = con.execute("select * from person_last_active order by all").fetchall()
        tables["last person-days"] = con.execute(
            "select app, source, person_id, max(day) from active_person_days group by all order by all"
        ).fetchall()
        return tables

    def check(step: str) -> dict[str, list[tuple[object, ...]]]:
        refresh(incremental)
        rebuilt = gold.connect(tmp_path / f"rebuilt-{step}.duckdb")
        refresh(rebuilt)
        expected, got = contents(rebuilt), contents(incremental)
        rebuilt.close()
        assert got == expected, step
        assert got["person_last_active"] == got["last person-days"], step
        return got

    first = check("first build")
    assert ("a", "web", "anon-1", date(2024, 1, 25)) in first["person_last_active"]
    # A new day (Sunday 28 January) on which anon-1 identifies as u9: anon-1's last day is rewritten
    # and it has no person-day left; u9 inherits 25 January.
    lake.append(EVENTS, silver([(date(2024, 1, 28), "u9", "anon-1", None), (date(2024, 1, 28), "u1", None, None)]))
    merged = check("merge")
    assert ("a", "web", "u9", date(2024, 1, 28)) in merged["person_last_active"]
    assert not [row for row in merged["person_last_active"] if row[2] == "anon-1"]
    mau_28 = incremental.execute(
        "select mau_rolling_30d, mau_calendar_month from monthly_active_users where day = '2024-01-28'"
    ).fetchall()
    assert mau_28 == [(6, 6)]  # u0..u4 and u9 (anon-1 is u9 now)
    # A late day inside history, read from its windows' person-days: u2 keeps 13 January as last day.
    lake.append(EVENTS, silver([(date(2024, 1, 5), "u-late", None, None), (date(2024, 1, 5), "u2", None, None)]))
    assert ("a", "web", "u2", date(2024, 1, 13)) in check("late day")["person_last_active"]
    # A reprocess removes u1's event of 28 January: u1's last day moves back to 22 January.
    lake.replace_where(EVENTS, silver([(date(2024, 1, 28), "u9", "anon-1", None)]), "event_date = '2024-01-28'")
    deleted = check("delete")
    assert ("a", "web", "u1", date(2024, 1, 22)) in deleted["person_last_active"]
    incremental.close()
