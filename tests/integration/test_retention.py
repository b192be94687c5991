"""retention_cohorts against independent computations: the shop sample (Polars), hand-made cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from pipelines.gold_rebuild import refresh_rebuilt
from tests.conftest import SAMPLES, ApiServer, Env, gold_options, materialize_all, silver_table
from tests.integration.test_end_to_end import replay_cli
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS
from warehouse.marts import catalog

pytestmark = pytest.mark.integration


def expected_from_csv(path: Path) -> set[tuple[date, int, int, int]]:
    """(cohort week, week number, cohort size, retained) from the raw CSV with Polars, own logic:
    weeks start on Monday; every week from 0 to the file's last active week is listed."""
    raw = pl.read_csv(path, columns=["user_id", "timestamp"], schema_overrides={"user_id": pl.String})
    weeks = raw.select(
        pl.col("user_id"),
        pl.col("timestamp").str.slice(0, 10).str.to_date("%Y-%m-%d").dt.truncate("1w").alias("week"),
    ).unique()
    cohorts = weeks.group_by("user_id").agg(pl.col("week").min().alias("cohort"))
    active = weeks.join(cohorts, on="user_id").with_columns(
        ((pl.col("week") - pl.col("cohort")).dt.total_days() // 7).alias("n")
    )
    retained = active.group_by("cohort", "n").agg(pl.len().alias("retained"))
    sizes = cohorts.group_by("cohort").agg(pl.len().alias("size"))
    last = weeks["week"].max()
    result = set()
    for cohort, size in sizes.iter_rows():
        counts = {n: r for c, n, r in retained.iter_rows() if c == cohort}
        for n in range((last - cohort).days // 7 + 1):
            result.add((cohort, n, size, counts.get(n, 0)))
    return result


def test_shop_retention_matches_polars_over_the_sample_csv(api: ApiServer, env: Env) -> None:
    replay_cli(api, "onlineshop_2019.csv")
    materialize_all(env)
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        rows = con.execute(
            """select cohort_week, week_number, cohort_people, retained_people, retention_rate
               from retention_cohorts where app = 'onlineshop_2019'"""
        ).fetchall()
    finally:
        con.close()
    expected = expected_from_csv(SAMPLES / "onlineshop_2019.csv")
    assert {row[:4] for row in rows} == expected
    assert all(rate == pytest.approx(retained / size) for _, _, size, retained, rate in rows)
    # not trivial: several cohorts, and people do come back after their first week
    assert len({row[0] for row in rows}) > 20 and any(row[1] > 0 and row[3] > 0 for row in rows)
    # served to dashboards, but the person-level state is not
    serving = duckdb.connect(str(env.serving), read_only=True)
    try:
        tables = {name for (name,) in serving.execute("select table_name from information_schema.tables").fetchall()}
    finally:
        serving.close()
    assert "retention_cohorts" in tables and "active_person_weeks" not in tables


MONDAY = datetime(2024, 4, 29, 12, tzinfo=UTC)
WEEK = timedelta(weeks=1)


def silver(events: list[tuple[str, str, datetime]]) -> pa.Table:
    """(event id, person, time) page views; people named bot… are bots."""
    return silver_table(
        [{"event_id": e, "user_id": p, "timestamp": ts, "is_bot": p.startswith("bot")} for e, p, ts in events]
    )


def test_hand_made_cohorts_and_a_late_first_visit_moving_a_person(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    # a: weeks 0, 1, 3; b: weeks 0, 2; c: first seen in week 1, back in week 2 (Sunday); a bot
    lake.append(
        EVENTS,
        silver(
            [
                ("a0", "a", MONDAY),
                ("a0b", "a", MONDAY + timedelta(days=2)),  # twice in one week counts once
                ("a1", "a", MONDAY + WEEK),
                ("a3", "a", MONDAY + 3 * WEEK),
                ("b0", "b", MONDAY + timedelta(days=6)),
                ("b2", "b", MONDAY + 2 * WEEK),
                ("c1", "c", MONDAY + WEEK + timedelta(days=1)),
                ("c2", "c", MONDAY + 2 * WEEK + timedelta(days=6)),
                ("bot", "bot1", MONDAY),
            ]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "active_person_weeks", gold_options())
    refresh_rebuilt(con, catalog()["retention_cohorts"])
    query = "select cohort_week, week_number, cohort_people, retained_people from retention_cohorts order by all"
    w0, w1 = MONDAY.date(), (MONDAY + WEEK).date()
    assert con.execute(query).fetchall() == [
        (w0, 0, 2, 2),
        (w0, 1, 2, 1),  # a
        (w0, 2, 2, 1),  # b
        (w0, 3, 2, 1),  # a
        (w1, 0, 1, 1),
        (w1, 1, 1, 1),  # c
        (w1, 2, 1, 0),  # nobody: still listed
    ]
    # a late event: c was already there in week 0, so c moves to the first cohort
    lake.append(EVENTS, silver([("c0", "c", MONDAY + timedelta(days=3))]))
    stats = refresh_mart(con, lake, "active_person_weeks", gold_options())
    assert stats.rewritten_rows == 7  # the seven days of week 0 were refreshed, nothing else
    refresh_rebuilt(con, catalog()["retention_cohorts"])
    assert con.execute(query).fetchall() == [
        (w0, 0, 3, 3),
        (w0, 1, 3, 2),  # a, c
        (w0, 2, 3, 2),  # b, c
        (w0, 3, 3, 1),
    ]
    con.close()


def test_retention_needs_its_state_first(tmp_path: Path) -> None:
    con = gold.connect(tmp_path / "w.duckdb")
    with pytest.raises(LookupError, match="active_person_weeks has never been refreshed"):
        refresh_rebuilt(con, catalog()["retention_cohorts"])
    con.close()
