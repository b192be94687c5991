"""Gold marts against hand-derived values, and incremental refresh of only the affected days."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import gold_options
from warehouse import gold
from warehouse.gold import GoldOptions
from warehouse.lake.history import change_stream
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.marts import catalog

_counter = iter(range(1_000_000))


def silver_rows(rows: list[tuple[str, str | None, str | None, bool]]) -> pa.Table:
    """(day, user_id, session_id, is_bot) → silver rows of app 'a' (other columns null)."""
    columns: dict[str, list[object]] = {name: [] for name in EVENTS.schema.names}
    for day, user, session, is_bot in rows:
        ts = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
        values = {
            "event_id": f"e{next(_counter)}",
            "event_type": "click",
            "app": "a",
            "source": "web",
            "source_format": "native",
            "timestamp": ts,
            "event_date": ts.date(),
            "received_at": ts,
            "user_id": user,
            "session_id": session,
            "is_bot": is_bot,
            "bronze_version": 0,
            "properties": "{}",
        }
        for name in columns:
            columns[name].append(values.get(name))
    return pa.table(columns, schema=EVENTS.schema)


def refresh_both(con: duckdb.DuckDBPyConnection, lake: Lake) -> dict[str, int]:
    marts = ("daily_active_users", "monthly_active_users")
    return {m: refresh_mart(con, lake, m, gold_options()).rewritten_rows for m in marts}


def dau(con: duckdb.DuckDBPyConnection) -> dict[date, int]:
    return dict(con.execute("select day, dau from daily_active_users where app = 'a'").fetchall())


def mau(con: duckdb.DuckDBPyConnection) -> dict[date, tuple[int, int]]:
    rows = con.execute(
        "select day, mau_rolling_30d, mau_calendar_month from monthly_active_users where app = 'a'"
    ).fetchall()
    return {day: (rolling, calendar) for day, rolling, calendar in rows}


def test_marts_match_hand_derived_values_and_refresh_only_affected_days(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(RAW_EVENTS)
    con = gold.connect(tmp_path / "warehouse.duckdb")
    lake.insert_new(
        EVENTS,
        silver_rows(
            [
                ("2024-01-01", "u1", None, False),
                ("2024-01-01", "u2", "s1", False),
                ("2024-01-01", "u1", None, False),
                ("2024-01-01", "crawler", None, True),
                ("2024-01-03", "u1", None, False),
                ("2024-01-03", None, "s9", False),
                ("2024-02-01", "u3", None, False),
            ]
        ),
    )
    assert refresh_both(con, lake) == {"daily_active_users": 32, "monthly_active_users": 32}

    daily = dau(con)
    assert len(daily) == 32  # 2024-01-01 .. 2024-02-01, idle days included
    assert (daily[date(2024, 1, 1)], daily[date(2024, 1, 2)], daily[date(2024, 1, 3)]) == (2, 0, 2)
    assert daily[date(2024, 2, 1)] == 1
    monthly = mau(con)
    assert monthly[date(2024, 1, 30)] == (3, 3)  # u1, u2, s9 in 01-01..01-30
    assert monthly[date(2024, 1, 31)] == (2, 3)  # 01-01 left the window: u1, s9
    assert monthly[date(2024, 2, 1)] == (3, 1)  # u1, s9, u3; February so far: u3

    # A late event on 2024-01-02 rewrites that DAU day, and for MAU the 30 days whose window
    # holds it plus the rest of January (calendar month), nothing else.
    lake.insert_new(EVENTS, silver_rows([("2024-01-02", "u4", None, False)]))
    assert refresh_both(con, lake) == {"daily_active_users": 1, "monthly_active_users": 31}
    assert dau(con)[date(2024, 1, 2)] == 1
    monthly = mau(con)
    assert monthly[date(2024, 1, 1)] == (2, 4)  # rewritten for its month only: the rolling count stays
    assert monthly[date(2024, 1, 30)] == (4, 4)
    assert monthly[date(2024, 1, 31)] == (3, 4)
    assert monthly[date(2024, 2, 1)] == (3, 1)  # 01-02 is outside 01-03..02-01

    # Nothing new: nothing rewritten. A later day grows the spine with idle days.
    assert refresh_both(con, lake) == {"daily_active_users": 0, "monthly_active_users": 0}
    lake.insert_new(EVENTS, silver_rows([("2024-02-04", "u1", None, False)]))
    refresh_both(con, lake)
    daily = dau(con)
    assert [daily[date(2024, 2, d)] for d in (2, 3, 4)] == [0, 0, 1]
    assert mau(con)[date(2024, 2, 4)] == (2, 2)  # window 01-06..02-04: u3, u1; February: u3, u1


def wau(con: duckdb.DuckDBPyConnection) -> dict[date, tuple[date, int, int]]:
    rows = con.execute(
        "select day, calendar_week, wau_rolling_7d, wau_calendar_week from weekly_active_users where app = 'a'"
    ).fetchall()
    return {day: (week, rolling, calendar) for day, week, rolling, calendar in rows}


def test_weekly_active_users_rolling_and_iso_week_by_hand(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(RAW_EVENTS)
    con = gold.connect(tmp_path / "warehouse.duckdb")
    # 2024-01-01 is a Monday; 2024-01-07 a Sunday
    lake.insert_new(
        EVENTS,
        silver_rows(
            [
                ("2024-01-01", "u1", None, False),
                ("2024-01-03", "u2", None, False),
                ("2024-01-03", "bot", None, True),
                ("2024-01-08", "u3", None, False),
                ("2024-01-09", "u1", None, False),
            ]
        ),
    )
    assert refresh_mart(con, lake, "weekly_active_users", gold_options()).rewritten_rows == 9  # 01-01 .. 01-09
    weekly = wau(con)
    monday, next_monday = date(2024, 1, 1), date(2024, 1, 8)
    assert weekly[date(2024, 1, 1)] == (monday, 1, 2)  # rolling: u1; the week: u1, u2
    assert weekly[date(2024, 1, 7)] == (monday, 2, 2)  # 01-01..01-07: u1, u2
    assert weekly[date(2024, 1, 8)] == (next_monday, 2, 2)  # 01-02..01-08: u2, u3; week 2: u3, u1
    assert weekly[date(2024, 1, 9)] == (next_monday, 3, 2)  # 01-03..01-09: u2, u3, u1

    # A late event on Thursday 01-04 changes that week's count on every day of the week, and the
    # rolling count of 01-04..01-09: exactly the days 01-01..01-09 are rewritten.
    lake.insert_new(EVENTS, silver_rows([("2024-01-04", "u4", None, False)]))
    assert refresh_mart(con, lake, "weekly_active_users", gold_options()).rewritten_rows == 9
    weekly = wau(con)
    assert weekly[date(2024, 1, 1)] == (monday, 1, 3)
    assert weekly[date(2024, 1, 9)] == (next_monday, 4, 2)


def test_connect_waits_out_a_lock_but_fails_at_once_on_other_io_errors(tmp_path: Path) -> None:
    # Regression: every IOException was retried for 60 s, so a warehouse path that can never open
    # (here a directory) cost each gold step a minute before it failed.
    directory = tmp_path / "a_directory"
    directory.mkdir()
    with pytest.raises(duckdb.IOException, match="Is a directory"):
        gold.connect(directory)
    assert gold.connect.statistics["attempt_number"] == 1  # type: ignore[attr-defined]

    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print(1, flush=True); time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"  # it holds the lock now
    con = gold.connect(path)
    holder.wait()
    assert gold.connect.statistics["attempt_number"] > 1  # type: ignore[attr-defined]
    con.close()


def test_connect_drops_the_primary_key_of_person_level_state_and_keeps_its_rows(tmp_path: Path) -> None:
    # Regression: the keys' indexes made every insert and checkpoint of these tables cost more as
    # history grew. A warehouse created with them is migrated on connect, rows intact.
    path = tmp_path / "warehouse.duckdb"
    old = duckdb.connect(str(path))
    old.execute(
        "create table active_person_weeks (app varchar not null, source varchar not null, day date not null,"
        " person_id varchar not null, primary key (app, source, day, person_id))"
    )
    old.execute("insert into active_person_weeks values ('a', 'web', date '2024-01-01', 'p1')")
    old.close()
    con = gold.connect(path)
    keys = "select table_name from duckdb_constraints() where constraint_type = 'PRIMARY KEY' order by all"
    keyed = {name for (name,) in con.execute(keys).fetchall()}
    unkeyed = {name for name, mart in catalog().items() if not mart.spec.keyed}
    assert unkeyed == {"sessions", "active_person_days", "active_person_weeks"}
    assert keyed.isdisjoint(unkeyed) and "daily_active_users" in keyed
    assert con.execute("select app, source, day, person_id, silver_version from active_person_weeks").fetchall() == [
        ("a", "web", date(2024, 1, 1), "p1", None)
    ]
    con.close()
    assert gold.connect(path).execute("select count(*) from active_person_weeks").fetchall() == [(1,)]  # idempotent


def test_refresh_in_week_batches_gives_the_same_marts_as_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: a first build of 50M events in one statement per mart ran out of memory (23 GB);
    # refreshes now go in batches of whole ISO weeks. A month split over two batches, weekly rows
    # and rolling windows crossing batch edges must come out as in a single batch, on a first
    # build and on an incremental run with a late day in the middle of history.
    from bench.bench_gold import synthetic_silver

    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(RAW_EVENTS)
    lake.append(EVENTS, synthetic_silver(np.random.default_rng(3), 0, 20_000, 300, date(2024, 1, 20), 75))
    warehouses = {weeks: gold.connect(tmp_path / f"warehouse{weeks}.duckdb") for weeks in (1, 100)}

    incremental = [name for name, mart in catalog().items() if mart.spec.kind == "incremental"]

    def refresh_all() -> None:
        for weeks, con in warehouses.items():
            for name in incremental:
                refresh_mart(con, lake, name, GoldOptions(batch_weeks=weeks))

    def rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
        columns = [c for (c,) in con.execute(f"select name from pragma_table_info('{table}')").fetchall()]
        kept = ", ".join(c for c in columns if c not in {"silver_version", "refreshed_at"})
        return con.execute(f"select {kept} from {table} order by all").fetchall()

    refresh_all()
    one_week, single = warehouses[1], warehouses[100]
    for table in incremental:
        assert rows(one_week, table) == rows(single, table), table
    # A late day (16 February, a Friday, mid-month) and the next new day.
    late = synthetic_silver(np.random.default_rng(4), 20_000, 500, 300, date(2024, 2, 16), 1)
    lake.append(
        EVENTS,
        pa.concat_tables([late, synthetic_silver(np.random.default_rng(5), 20_500, 500, 300, date(2024, 4, 4), 1)]),
    )
    refresh_all()
    for table in incremental:
        assert rows(one_week, table) == rows(single, table), table
    assert len(rows(single, "daily_active_users")) == 76


def test_a_first_build_streams_the_change_feed_instead_of_holding_it(tmp_path: Path) -> None:
    # Regression: a first build read the whole history's change feed into memory, plus a cast copy
    # of it, for identity, first-seen and each mart's changed days: 16 GB at 50M events (out of
    # memory). The feed now streams through DuckDB, so Arrow's peak allocation during a first build
    # stays a small fraction of the feed (it was 1.1-2.2x the feed before).
    import polars as pl
    import pyarrow.compute as pc

    from bench.bench_gold import synthetic_silver

    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(RAW_EVENTS)
    rng = np.random.default_rng(11)
    for start in range(0, 400_000, 100_000):
        rows = synthetic_silver(rng, start, 100_000, 2_000, date(2024, 1, 1), 60)
        # Every user also has a device id: identity has a link per user to make.
        anonymous = pc.binary_join_element_wise("device-", rows["user_id"], "")
        field = EVENTS.schema.get_field_index("anonymous_id")
        lake.append(EVENTS, rows.set_column(field, EVENTS.schema.field("anonymous_id"), anonymous))
    feed_bytes = change_stream(lake, EVENTS, -1, lake.version(EVENTS) or 0).read_all().nbytes
    con = gold.connect(tmp_path / "warehouse.duckdb")
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        refresh_mart(con, lake, "daily_active_users", gold_options())
    finally:
        pa.set_memory_pool(previous)
    assert pool.max_memory() < feed_bytes / 10

    assert con.execute("select count(*), count(distinct person_id) from identity_links").fetchall() == [(2_000, 2_000)]
    silver = pl.from_arrow(lake.dataset(EVENTS).to_table(columns=["timestamp", "user_id", "is_bot"]))
    assert isinstance(silver, pl.DataFrame)
    expected = (
        silver.filter(~pl.col("is_bot"))
        .group_by(pl.col("timestamp").dt.date().alias("day"))
        .agg(pl.col("user_id").n_unique().alias("dau"))
        .sort("day")
    )
    got = con.execute("select day, dau from daily_active_users order by day").fetchall()
    assert got == list(expected.iter_rows())
