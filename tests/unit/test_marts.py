"""The mart loader refuses, at load time and naming the mart, folders that would corrupt or break gold
(regressions from trying to break the loader: each of these once loaded and corrupted a warehouse
or failed only in the middle of a run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import MART_YAML, add_daily_clicks, silver_table
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.marts import Mart, MartError, MartSpec, catalog, load_marts


def rename(folder: Path, name: str) -> Path:
    """``folder`` renamed to ``name``, its SQL's table name with it."""
    target = folder.with_name(name)
    folder.rename(target)
    for file in target.glob("*.sql"):
        file.write_text(file.read_text().replace("daily_clicks", name))
    return target


@pytest.mark.parametrize("name", ["people_events", "previous_rows", "gold_watermarks", "identity_links", "events"])
def test_a_mart_may_not_take_a_name_the_refresh_or_the_shared_state_uses(tmp_path: Path, name: str) -> None:
    # `people_events` once became a real table that broke five shipped marts, even after its removal.
    rename(add_daily_clicks(tmp_path), name)
    with pytest.raises(MartError, match=f"mart {name}: the name '{name}' is reserved"):
        load_marts([tmp_path])


def test_a_mart_may_not_be_named_by_a_reserved_keyword(tmp_path: Path) -> None:
    rename(add_daily_clicks(tmp_path), "select")
    with pytest.raises(MartError, match="mart select: the name 'select' is reserved"):
        load_marts([tmp_path])


@pytest.mark.parametrize("state", ["daily_active_users", "gold_watermarks", "person_last_active"])
def test_a_state_table_may_not_be_another_marts_or_shared(tmp_path: Path, state: str) -> None:
    # `state: daily_active_users` once emptied DAU on the mart's first build, with the run green.
    folder = add_daily_clicks(tmp_path)
    (folder / "mart.yaml").write_text(MART_YAML + f"state: {state}\n")
    (folder / "maintain.sql").write_text("select 1")
    (folder / "create.sql").write_text(
        (folder / "create.sql").read_text() + f"create table if not exists {state} (app varchar);\n"
    )
    with pytest.raises(MartError, match="mart daily_clicks: (the name|table) '" + state):
        catalog.__wrapped__(tmp_path)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("create or replace table daily_clicks (app varchar);", "may only 'create table if not exists'"),
        ("drop table weekly_active_users;", "may only 'create table if not exists'"),
        ("create table if not exists daily_active_users (app varchar);", "may only 'create table if not exists'"),
        ("create tabel daily_clicks (x int);", "create.sql does not parse"),
    ],
)
def test_create_sql_may_only_create_and_extend_the_marts_own_tables(
    tmp_path: Path, statement: str, message: str
) -> None:
    # `create or replace table` in create.sql once emptied the mart on every connection.
    folder = add_daily_clicks(tmp_path)
    (folder / "create.sql").write_text((folder / "create.sql").read_text() + statement + "\n")
    with pytest.raises(MartError, match=f"mart daily_clicks: .*{message}"):
        load_marts([tmp_path])


def test_views_sql_may_only_create_views(tmp_path: Path) -> None:
    folder = add_daily_clicks(tmp_path)
    (folder / "views.sql").write_text("drop table daily_active_users;\n")
    with pytest.raises(MartError, match="mart daily_clicks: views.sql may only 'create or replace view'"):
        load_marts([tmp_path])


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("expectations.json", "{not json", "expectations.json is not a suite"),
        ("expectations.json", "[1, 2]", "expectations.json is not a suite"),
        ("mart.yaml", MART_YAML + "kind: rebuild\n", "a rebuild mart reads at least one mart"),
        ("mart.yaml", MART_YAML + "insert: {model: nowhere}\n", "no shared insert model"),
        ("create.sql", "", "create.sql creates \\[\\], not \\['daily_clicks'\\]"),
        (
            "create.sql",
            "create table if not exists daily_clicks (app varchar, source varchar, day date, clicks bigint);",
            "its table lacks the columns \\['silver_version'\\]",
        ),
    ],
)
def test_a_folder_that_would_fail_mid_run_fails_at_load(tmp_path: Path, file: str, text: str, message: str) -> None:
    folder = add_daily_clicks(tmp_path)
    (folder / file).write_text(text)
    with pytest.raises(MartError, match=f"(?s)mart daily_clicks: .*{message}"):
        load_marts([tmp_path])


def test_the_extra_marts_setting_must_name_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MartError, match="EVENTLAKE_EXTRA_MARTS_DIR .*nowhere is not a directory"):
        catalog.__wrapped__(tmp_path / "nowhere")


def test_a_failing_insert_reports_its_own_error_not_the_aborted_transaction(tmp_path: Path) -> None:
    # The clean-up after a failed batch once ran on the aborted transaction and raised instead.
    folder = add_daily_clicks(tmp_path / "marts")
    (folder / "insert.sql").write_text(
        "insert into daily_clicks (app, source, day, clicks) select nope from people_events"
    )
    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(RAW_EVENTS)
    lake.append(EVENTS, silver_table([{"timestamp": datetime(2024, 5, 1, 10, tzinfo=UTC)}]))
    options = gold.GoldOptions(extra_marts_dir=tmp_path / "marts")
    con = gold.connect(tmp_path / "w.duckdb", marts=options.marts)
    with pytest.raises(duckdb.BinderException, match='column "nope"'):
        refresh_mart(con, lake, "daily_clicks", options)
    con.close()


def test_a_warehouse_whose_tables_cannot_be_created_is_closed_again(tmp_path: Path) -> None:
    # A failed create once kept the file's write lock while the error was referenced.
    folder = add_daily_clicks(tmp_path / "marts")
    (folder / "create.sql").write_text("create table if not exists daily_clicks (x int references nowhere (y));")
    broken = Mart(
        name="daily_clicks", folder=folder, spec=MartSpec.model_validate({"description": "x", "grain": ["x"]})
    )
    path = tmp_path / "w.duckdb"
    with pytest.raises(duckdb.Error):
        gold.connect(path, marts={"daily_clicks": broken})
    duckdb.connect(str(path), config={"memory_limit": "1GB"}).close()  # another configuration: only if closed
