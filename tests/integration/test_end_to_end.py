"""HTTP POST → bronze → Dagster (validate, scrub, enrich) → silver → DAU/MAU, on the real samples."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest

from tests.conftest import SAMPLES, ApiServer, Env, expectation_results, materialize_all
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS

pytestmark = pytest.mark.integration

REPLAY = Path(sys.executable).parent / "eventlake-replay"


def replay_cli(api: ApiServer, *files: str) -> str:
    done = subprocess.run(
        [
            str(REPLAY),
            "--api-url",
            api.url,
            f"--write-key={api.key}",
            "--no-progress",
            *(str(SAMPLES / f) for f in files),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout + done.stderr


def expected_from_csv(path: Path) -> tuple[dict[date, int], dict[date, tuple[int, int]], dict[date, tuple[int, int]]]:
    """DAU, (rolling 7-day, ISO-week) WAU and (rolling 30-day, calendar-month) MAU straight from
    the raw CSV, own parsing.

    Every user in these files is a person (no bots); the day is the first 10 characters of the
    naive timestamp, which the files record in UTC.
    """
    raw = pl.read_csv(path, columns=["user_id", "timestamp"], schema_overrides={"user_id": pl.String})
    raw = raw.with_columns(pl.col("timestamp").str.slice(0, 10).str.to_date("%Y-%m-%d").alias("day"))
    first, last = raw["day"].min(), raw["day"].max()
    assert isinstance(first, date) and isinstance(last, date)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    per_day = {d: set() for d in days}
    for user, day in raw.select("user_id", "day").iter_rows():
        per_day[day].add(user)
    per_month: dict[tuple[int, int], set[str]] = {}
    for day, users in per_day.items():
        per_month.setdefault((day.year, day.month), set()).update(users)
    per_week: dict[tuple[int, int], set[str]] = {}
    for day, users in per_day.items():
        per_week.setdefault(day.isocalendar()[:2], set()).update(users)
    dau = {d: len(per_day[d]) for d in days}
    mau, wau = {}, {}
    for i, d in enumerate(days):
        window = set().union(*(per_day[w] for w in days[max(0, i - 29) : i + 1]))
        mau[d] = (len(window), len(per_month[(d.year, d.month)]))
        week = set().union(*(per_day[w] for w in days[max(0, i - 6) : i + 1]))
        wau[d] = (len(week), len(per_week[d.isocalendar()[:2]]))
    return dau, wau, mau


def gold(env: Env, app: str) -> tuple[dict[date, int], dict[date, tuple[int, int]], dict[date, tuple[int, int]]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        dau = dict(con.execute("select day, dau from daily_active_users where app = ?", [app]).fetchall())
        wau = {
            day: (rolling, calendar)
            for day, rolling, calendar in con.execute(
                "select day, wau_rolling_7d, wau_calendar_week from weekly_active_users where app = ?", [app]
            ).fetchall()
        }
        mau = {
            day: (rolling, calendar)
            for day, rolling, calendar in con.execute(
                "select day, mau_rolling_30d, mau_calendar_month from monthly_active_users where app = ?", [app]
            ).fetchall()
        }
    finally:
        con.close()
    return dau, wau, mau


def gold_tables(env: Env) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        return {
            t: con.execute(f"select * from {t} order by all").fetchall()
            for t in ("daily_active_users", "weekly_active_users", "monthly_active_users")
        }
    finally:
        con.close()


def expected_new_people(path: Path) -> dict[date, tuple[int, int]]:
    """(new, returning) people per day straight from the raw CSV: new on the day of their first row."""
    raw = pl.read_csv(path, columns=["user_id", "timestamp"], schema_overrides={"user_id": pl.String})
    days = raw.select("user_id", pl.col("timestamp").str.slice(0, 10).str.to_date("%Y-%m-%d").alias("day")).unique()
    first = days.group_by("user_id").agg(pl.col("day").min().alias("first_day"))
    per_day = (
        days.join(first, on="user_id")
        .group_by("day")
        .agg(
            (pl.col("day") == pl.col("first_day")).sum().alias("new"),
            (pl.col("day") != pl.col("first_day")).sum().alias("returning"),
        )
    )
    counted = {d: (n, r) for d, n, r in per_day.iter_rows()}
    spine = pl.date_range(days["day"].min(), days["day"].max(), eager=True).to_list()
    return {d: counted.get(d, (0, 0)) for d in spine}


def new_people(env: Env, app: str) -> dict[date, tuple[int, int]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select day, new_people, returning_people from daily_active_users where app = ?", [app]
        ).fetchall()
    finally:
        con.close()
    return {d: (n, r) for d, n, r in rows}


def silver(env: Env) -> pl.DataFrame:
    return pl.read_delta(env.lake.uri(EVENTS)).sort("event_id")


def test_samples_flow_to_dau_mau_that_match_the_raw_csv_and_replays_are_idempotent(api: ApiServer, env: Env) -> None:
    output = replay_cli(api, "web_access_2015.log", "onlineshop_2019.csv", "ecom_scenarios_2024.csv.gz")
    assert "accepted=73389 rejected=0" in output
    result = materialize_all(env)
    assert all(check.passed for check in result.get_asset_check_evaluations())

    for app, file in (
        ("onlineshop_2019", "onlineshop_2019.csv"),
        ("ecom_scenarios_2024", "ecom_scenarios_2024.csv.gz"),
    ):
        expected_dau, expected_wau, expected_mau = expected_from_csv(SAMPLES / file)
        actual_dau, actual_wau, actual_mau = gold(env, app)
        assert actual_dau == expected_dau, app
        assert actual_wau == expected_wau, app
        assert actual_mau == expected_mau, app
        assert new_people(env, app) == expected_new_people(SAMPLES / file), app

    events = silver(env)
    assert events.height == 73389
    assert events["event_id"].n_unique() == events.height
    web = events.filter(pl.col("app") == "web_access_2015")
    assert 1000 < web["is_bot"].sum() < 3000  # the log's crawler traffic is flagged, kept in silver
    assert web["ip"].str.ends_with(".0").all()  # truncated to /24
    assert not web["user_id"].str.starts_with("10.").any()  # pseudonyms, never the address

    # Replaying the same file again appends to bronze but changes neither silver nor gold.
    silver_before, gold_before = events, gold_tables(env)
    assert "accepted=32283" in replay_cli(api, "onlineshop_2019.csv")
    result = materialize_all(env)
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert metadata["bronze_rows"].value == 32283
    assert metadata["inserted_rows"].value == 0
    assert silver(env).equals(silver_before)
    assert gold_tables(env) == gold_before


def test_content_bad_event_goes_to_quarantine_with_reason_and_secrets_are_scrubbed(api: ApiServer, env: Env) -> None:
    batch = [
        {
            "uuid": "ok-1",
            "timestamp": "2024-05-01T10:00:00Z",
            "app": "t",
            "user": "u1",
            "page": "https://t.example/login?token=abc&next=%2Fhome",
            "events": {
                "errors": {
                    "stackTrace": "Error at login(password=hunter2) for jane@example.com",
                    "form": {"password": "hunter2", "email": "jane@example.com"},
                }
            },
        },
        {"timestamp": "2024-05-01T10:00:00Z", "user": "u2"},  # structural: no uuid
        {"uuid": "bad-1", "timestamp": "1999-12-31T23:59:59Z", "app": "t", "user": "u3"},  # too old
        {
            "uuid": "bad-2",
            "timestamp": "2024-05-01T10:00:00Z",
            "app": "t",
            "user": "u4",
            "events": {"Sign Up!": {}},
        },  # bad name
        {"uuid": "ok-2", "timestamp": "2024-05-01T11:00:00Z", "app": "t", "session": "s5"},
    ]
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    body = api.post("/v1/events", json=batch, headers={"User-Agent": browser}).json()
    assert body["accepted"] == 4
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "uuid")]

    result = materialize_all(env)
    checks = expectation_results(result, "events", "raw_events_expectations")
    assert checks["timestamp_after_2000"] is False and checks["event_type_name"] is False
    assert checks["event_id_present"] is True and len(checks) == 24

    quarantine = pl.read_delta(env.lake.uri(REJECTED_EVENTS)).sort("reason")
    assert quarantine["reason"].to_list() == ["event_type_name", "timestamp_after_2000"]
    assert quarantine["reason_type"].to_list() == ["schema_violation", "timestamp_out_of_range"]
    assert quarantine["event_type"].to_list() == ["Sign Up!", "page_view"]
    assert orjson.loads(quarantine["payload"][1])["uuid"] == "bad-1"  # the original event is kept
    assert quarantine["run_id"].to_list() == [result.run_id] * 2

    rows = silver(env).sort("timestamp")
    assert rows["event_type"].to_list() == ["errors", "page_view"]
    assert rows["browser_family"].to_list() == ["Firefox", "Firefox"]
    assert rows["is_bot"].to_list() == [False, False]
    properties = orjson.loads(rows["properties"][0])
    assert properties["form"] == {"password": "[REDACTED]", "email": "[EMAIL]"}
    assert properties["stackTrace"] == "Error at login(password=[REDACTED]) for [EMAIL]"
    assert rows["page_url"][0] == "https://t.example/login?token=[REDACTED]&next=%2Fhome"
    assert "hunter2" not in rows.write_csv() and "jane@" not in rows.write_csv()

    con = duckdb.connect(str(env.warehouse), read_only=True)
    assert con.execute("select day, dau from daily_active_users where app = 't'").fetchall() == [
        (date(2024, 5, 1), 2)  # u1 and the anonymous session s5
    ]
    con.close()
