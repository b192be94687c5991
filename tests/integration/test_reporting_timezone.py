"""Reporting days in an IANA time zone: DST-correct day boundaries, stored as DATE, incremental."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import gold_options, silver_table
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS
from warehouse.settings import Settings

pytestmark = pytest.mark.integration

_ids = iter(range(1_000_000))


def silver(events: list[tuple[str, str]]) -> pa.Table:
    """(person, UTC time as RFC 3339) page views of app 'a'."""
    return silver_table([{"user_id": person, "timestamp": datetime.fromisoformat(when)} for person, when in events])


@pytest.fixture
def zone(setting: Callable[[str, str], None]) -> str:
    setting("EVENTLAKE_REPORTING_TIMEZONE", "America/New_York")
    return "America/New_York"


def by_hand(events: list[tuple[str, str]], zone: str) -> dict[date, int]:
    """DAU with Python's zoneinfo: each event's local calendar day."""
    people: dict[date, set[str]] = defaultdict(set)
    for person, when in events:
        people[datetime.fromisoformat(when).astimezone(ZoneInfo(zone)).date()].add(person)
    return {day: len(who) for day, who in people.items()}


# Around both 2024 DST changes in New York (clocks forward on 10 March, back on 3 November).
EVENTS_NY = [
    ("a", "2024-03-10T04:30:00+00:00"),  # 9 March 23:30 EST
    ("b", "2024-03-10T05:30:00+00:00"),  # 10 March 00:30 EST
    ("c", "2024-03-11T03:30:00+00:00"),  # 10 March 23:30 EDT (a 23-hour day)
    ("d", "2024-03-11T04:30:00+00:00"),  # 11 March 00:30 EDT
    ("e", "2024-11-03T05:30:00+00:00"),  # 3 November 01:30 EDT
    ("f", "2024-11-03T06:30:00+00:00"),  # 3 November 01:30 EST (the hour repeats)
    ("g", "2024-11-04T04:30:00+00:00"),  # 3 November 23:30 EST (a 25-hour day)
    ("h", "2024-11-04T05:30:00+00:00"),  # 4 November 00:30 EST
]


def test_days_follow_the_reporting_zone_across_dst(tmp_path: Path, zone: str) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(EVENTS, silver(EVENTS_NY))
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "daily_active_users", gold_options())
    dau = dict(con.execute("select day, dau from daily_active_users where dau > 0").fetchall())
    assert dau == by_hand(EVENTS_NY, zone)
    assert dau == {
        date(2024, 3, 9): 1,
        date(2024, 3, 10): 2,
        date(2024, 3, 11): 1,
        date(2024, 11, 3): 3,
        date(2024, 11, 4): 1,
    }
    assert con.execute("select typeof(day) from daily_active_users limit 1").fetchone() == ("DATE",)

    # a late event on the evening of 9 March (local) is 10 March in UTC: only 9 March is rewritten
    version = lake.append(EVENTS, silver([("z", "2024-03-10T03:00:00+00:00")]))
    refresh_mart(con, lake, "daily_active_users", gold_options())
    stamped = con.execute("select day from daily_active_users where silver_version = ?", [version]).fetchall()
    assert stamped == [(date(2024, 3, 9),)]
    assert con.execute("select dau from daily_active_users where day = '2024-03-09'").fetchone() == (2,)

    # calendar weeks are local too: Sunday 10 March 23:30 EDT belongs to the week of Monday 4 March
    refresh_mart(con, lake, "weekly_active_users", gold_options())
    week = "select wau_calendar_week from weekly_active_users where day = ?"
    assert con.execute(week, [date(2024, 3, 10)]).fetchone() == (4,)  # a, b, c, z
    assert con.execute(week, [date(2024, 3, 11)]).fetchone() == (1,)  # d
    con.close()


def test_sessions_take_the_local_day_they_started_and_a_new_zone_recomputes(
    tmp_path: Path, setting: Callable[[str, str], None]
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    # 23:50 and 00:10 local in Kathmandu (+05:45): one session, started on 1 May there
    lake.append(EVENTS, silver([("k", "2024-05-01T18:05:00+00:00"), ("k", "2024-05-01T18:25:00+00:00")]))
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "sessions", gold_options())
    assert con.execute("select day, events from sessions").fetchall() == [(date(2024, 5, 1), 2)]
    setting("EVENTLAKE_REPORTING_TIMEZONE", "Asia/Kathmandu")
    assert refresh_mart(con, lake, "sessions", gold_options()).silver_from == -1  # another zone: everything again
    assert con.execute("select day, events from sessions").fetchall() == [(date(2024, 5, 1), 2)]
    refresh_mart(con, lake, "daily_active_users", gold_options())
    # the second event is 2 May in Kathmandu: both days have the person
    assert con.execute("select day, dau from daily_active_users order by day").fetchall() == [
        (date(2024, 5, 1), 1),
        (date(2024, 5, 2), 1),
    ]
    con.close()


def test_a_new_zone_leaves_no_row_of_the_old_days(tmp_path: Path, setting: Callable[[str, str], None]) -> None:
    # Regression (hostile review): rows of days only the old zone produced stayed, counting twice.
    lake = Lake(str(tmp_path / "lake"))
    lake.append(EVENTS, silver([("u1", "2026-01-05T11:00:00+00:00")]))
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute("select day, dau from daily_active_users").fetchall() == [(date(2026, 1, 5), 1)]
    setting("EVENTLAKE_REPORTING_TIMEZONE", "Pacific/Kiritimati")  # +14: 01:00 on 6 January
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute("select day, dau from daily_active_users").fetchall() == [(date(2026, 1, 6), 1)]
    con.close()


@pytest.mark.parametrize("name", ["posixrules", "right/UTC", "Mars/Olympus", ""])
def test_zones_duckdb_cannot_use_are_refused_at_start_up(name: str) -> None:
    # Regression (hostile review): zoneinfo accepted posixrules, then every refresh failed in DuckDB.
    with pytest.raises(ValueError, match="time zone"):
        Settings(reporting_timezone=name)


def test_settings_are_built_safely_in_many_threads_at_once() -> None:
    # Regression (CI): the zone check used DuckDB's shared default connection; a second thread
    # building settings at the same time got no rows back and failed with IndexError.
    def build(_: int) -> str:
        return Settings(reporting_timezone="Europe/Berlin").reporting_timezone

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(build, range(400))) == {"Europe/Berlin"}
