"""sessions against independent computations: the samples' CSVs (Polars) and hand-made cases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import SAMPLES, ApiServer, Env, gold_options, materialize_all, silver_table
from tests.integration.test_end_to_end import replay_cli
from warehouse import gold
from warehouse.gold import GoldOptions
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS

pytestmark = pytest.mark.integration


def csv_events(name: str) -> pl.DataFrame:
    """user, optional client session id and UTC time of every row of a sample CSV."""
    raw = pl.read_csv(SAMPLES / name, infer_schema=False)
    return raw.select(
        pl.col("user_id"),
        (pl.col("session_id") if "session_id" in raw.columns else pl.lit(None, pl.String)).alias("session_id"),
        pl.col("timestamp").str.to_datetime(time_unit="us").dt.replace_time_zone("UTC").alias("ts"),
    )


def inactivity_sessions(events: pl.DataFrame, timeout: timedelta) -> set[tuple[datetime, datetime, int]]:
    """(start, end, events) per session: a gap above ``timeout`` per user starts a new one."""
    ordered = events.sort("user_id", "ts").with_columns(
        (pl.col("ts").diff().over("user_id") > timeout).fill_null(True).cum_sum().over("user_id").alias("n")
    )
    sessions = ordered.group_by("user_id", "n").agg(
        pl.col("ts").min().alias("start"), pl.col("ts").max().alias("end"), pl.len().alias("events")
    )
    return set(sessions.select("start", "end", "events").iter_rows())


def mart(env: Env, app: str) -> set[tuple[datetime, datetime, int]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select started_at, ended_at, events, duration_s, day from sessions where app = ?", [app]
        ).fetchall()
    finally:
        con.close()
    for started, ended, _, duration, day in rows:
        assert duration == (ended - started).total_seconds() and day == started.astimezone(UTC).date()
    return {(s.astimezone(UTC), e.astimezone(UTC), n) for s, e, n, _, _ in rows}


def test_sample_sessions_match_polars_over_the_csvs(api: ApiServer, env: Env) -> None:
    replay_cli(api, "onlineshop_2019.csv", "ecom_scenarios_2024.csv.gz")
    materialize_all(env)
    # no session ids in the shop file: 30 minutes of inactivity
    shop = inactivity_sessions(csv_events("onlineshop_2019.csv"), timedelta(minutes=30))
    assert mart(env, "onlineshop_2019") == shop and len(shop) > 5_000
    # the ecom file sends its own session ids: one session per (user, id)
    ecom = csv_events("ecom_scenarios_2024.csv.gz")
    by_id = ecom.group_by("user_id", "session_id").agg(
        pl.col("ts").min().alias("start"), pl.col("ts").max().alias("end"), pl.len().alias("events")
    )
    expected = set(by_id.select("start", "end", "events").iter_rows())
    assert mart(env, "ecom_scenarios_2024") == expected and len(expected) > 1_000


T0 = datetime(2024, 5, 1, 23, 40, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def silver(events: list[tuple[str, str, str | None, datetime, str | None]]) -> pa.Table:
    """(event id, person, client session id, time, page) page views of app 'a'; bot… are bots."""
    return silver_table(
        [
            {"event_id": e, "user_id": p, "session_id": s, "timestamp": ts, "page_url": page}
            | {"is_bot": p.startswith("bot")}
            for e, p, s, ts, page in events
        ]
    )


def test_hand_made_sessions_midnight_late_merge_and_timeout_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        silver(
            [
                # p: 23:40, 23:55, 00:20 (crosses midnight, one session), then 01:00 (35 min gap: new)
                ("p1", "p", None, T0, "/home"),
                ("p2", "p", None, T0 + 15 * MINUTE, "/cart"),
                ("p3", "p", None, T0 + 40 * MINUTE, "/pay"),
                ("p4", "p", None, T0 + 80 * MINUTE, "/done"),
                # q: a client session id holds across a 2 h gap
                ("q1", "q", "s-1", T0, "/a"),
                ("q2", "q", "s-1", T0 + 120 * MINUTE, None),
                ("bot", "bot1", None, T0, "/"),
            ]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "sessions", gold_options())
    query = """select day, client_session_id, started_at, duration_s, events, page_views, entry_page, exit_page
               from sessions order by started_at, client_session_id nulls first"""
    day1, day2 = T0.date(), (T0 + 80 * MINUTE).date()
    assert con.execute(query).fetchall() == [
        (day1, None, T0, 40 * 60.0, 3, 3, "/home", "/pay"),
        (day1, "s-1", T0, 120 * 60.0, 2, 2, "/a", "/a"),
        (day2, None, T0 + 80 * MINUTE, 0.0, 1, 1, "/done", "/done"),
    ]
    # a late event at 00:45 closes the gap: the next-day session merges into the one from day 1
    lake.append(EVENTS, silver([("late", "p", None, T0 + 65 * MINUTE, "/help")]))
    refresh_mart(con, lake, "sessions", gold_options())
    assert con.execute(query).fetchall() == [
        (day1, None, T0, 80 * 60.0, 5, 5, "/home", "/done"),
        (day1, "s-1", T0, 120 * 60.0, 2, 2, "/a", "/a"),
    ]
    # a shorter timeout is a new definition: every session is recomputed
    assert refresh_mart(con, lake, "sessions", GoldOptions(session_timeout_minutes=10)).silver_from == -1
    assert con.execute("select count(*) from sessions where client_session_id is null").fetchone() == (5,)
    con.close()


@pytest.mark.parametrize("timezone", ["UTC", "America/New_York"])
def test_partial_days_rewrite_only_the_sessions_a_change_next_door_reaches(
    tmp_path: Path, setting: Callable[[str, str], None], timezone: str
) -> None:
    # A day next to a changed day keeps every session the change cannot reach (their rows keep the
    # silver version they were computed from); the others are recomputed. After each change the
    # incremental warehouse must hold what a warehouse built from scratch holds. New York: the
    # middle day is the DST switch (a 23-hour reporting day).
    setting("EVENTLAKE_REPORTING_TIMEZONE", timezone)
    zone = ZoneInfo(timezone)
    d0, d1, d2 = (date(2024, 3, d) for d in (9, 10, 11))

    def at(day: date, hour: int, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)

    events = [
        ("a1", "p", None, at(d1, 10, 0), "/a"),  # p's midday visit: nowhere near midnight
        ("b1", "p", None, at(d1, 23, 50), "/b"),  # p's late visit: 10 minutes before midnight
        ("c1", "q", None, at(d1, 12, 0), "/c"),
        ("s1", "c", "s-1", at(d1, 15, 0), "/s"),  # a client session
        ("e1", "r", None, at(d1, 0, 10), "/e"),  # r's visit 10 minutes after midnight
        ("f1", "q", None, at(d2, 9, 0), "/f"),
    ]
    lake = Lake(str(tmp_path / "lake"))
    v0 = lake.append(EVENTS, silver(events))
    incremental = gold.connect(tmp_path / "incremental.duckdb")
    marts = ("sessions", "daily_sessions")

    def check(step: str) -> list[tuple[object, ...]]:
        """Refresh; compare with a rebuild; (started_at local time, events, exit page, version) of d1 and d0."""
        for con in (incremental, rebuilt := gold.connect(tmp_path / f"rebuilt-{step}.duckdb")):
            for mart in marts:
                refresh_mart(con, lake, mart, gold_options())
        for mart in marts:
            query = f"select * exclude (silver_version) from {mart} order by all"
            assert incremental.execute(query).fetchall() == rebuilt.execute(query).fetchall(), (step, mart)
        rebuilt.close()
        rows = incremental.execute(
            "select day, started_at, events, exit_page, silver_version from sessions where day <= ? order by all", [d1]
        ).fetchall()
        return [(day, start.astimezone(zone).strftime("%H:%M"), n, page, v) for day, start, n, page, v in rows]

    assert check("first") == [
        (d1, "00:10", 1, "/e", v0),
        (d1, "10:00", 1, "/a", v0),
        (d1, "12:00", 1, "/c", v0),
        (d1, "15:00", 1, "/s", v0),
        (d1, "23:50", 1, "/b", v0),
    ]
    # d2 gains p at 00:15 (extends p's late visit) and more of client session s-1: on d1 only those
    # two sessions are rewritten
    extend = [("b2", "p", None, at(d2, 0, 15), "/b2"), ("s2", "c", "s-1", at(d2, 8, 0), None)]
    v1 = lake.append(EVENTS, silver(extend))
    assert check("extend") == [
        (d1, "00:10", 1, "/e", v0),
        (d1, "10:00", 1, "/a", v0),
        (d1, "12:00", 1, "/c", v0),
        (d1, "15:00", 2, "/s", v1),
        (d1, "23:50", 2, "/b2", v1),
    ]
    # a late event of r at 23:55 on d0: d0's new visit absorbs r's visit of 00:10 on d1; p's late
    # visit cannot be reached from d0 and keeps its version
    v2 = lake.append(EVENTS, silver([("e0", "r", None, at(d0, 23, 55), "/e0")]))
    assert check("absorb") == [
        (d0, "23:55", 2, "/e", v2),
        (d1, "10:00", 1, "/a", v0),
        (d1, "12:00", 1, "/c", v0),
        (d1, "15:00", 2, "/s", v2),
        (d1, "23:50", 2, "/b2", v1),
    ]
    # a reprocess of d2's events drops p's 00:15 event and s-1's second event: p's late visit ends at
    # 23:50 again
    v3 = lake.replace_where(EVENTS, silver(events[-1:]), "event_id in ('b2', 's2', 'f1')")
    assert check("reprocess") == [
        (d0, "23:55", 2, "/e", v2),
        (d1, "10:00", 1, "/a", v0),
        (d1, "12:00", 1, "/c", v0),
        (d1, "15:00", 1, "/s", v3),
        (d1, "23:50", 1, "/b", v3),
    ]
    incremental.close()


def test_a_delete_splitting_the_last_session_gives_the_next_day_its_own_row(tmp_path: Path) -> None:
    # Regression (break-it fuzzing): p's session 23:50 → 00:10 was the mart's last row, on the first
    # day. Deleting the 23:50 event leaves a session of its own on the second day, a day the mart had
    # no row for: the refresh ended at the mart's last day and never wrote it.
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        silver([("e1", "p", None, T0 + 10 * MINUTE, "/a"), ("e2", "p", None, T0 + 30 * MINUTE, "/b")]),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    for mart in ("sessions", "daily_sessions"):
        refresh_mart(con, lake, mart, gold_options())
    assert con.execute("select day, started_at, events from sessions").fetchall() == [(T0.date(), T0 + 10 * MINUTE, 2)]
    lake.replace_where(EVENTS, silver([]), "event_id in ('e1')")
    for mart in ("sessions", "daily_sessions"):
        refresh_mart(con, lake, mart, gold_options())
    second_day = (T0 + 30 * MINUTE).date()
    assert con.execute("select day, started_at, events from sessions").fetchall() == [(second_day, T0 + 30 * MINUTE, 1)]
    assert con.execute("select day, sessions from daily_sessions order by day").fetchall() == [(second_day, 1)]
    con.close()
