"""A mart is one folder: dropped into the extra marts directory, it becomes an asset with its check,
a warehouse table and a serving view, with no other file changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.defs import build_definitions
from tests.conftest import Env, materialize_all, silver_table
from warehouse.lake.tables import EVENTS
from warehouse.marts import MartError, catalog, load_marts

pytestmark = pytest.mark.integration

MART_YAML = """\
description: "Gold: clicks per app and day (a mart added by a deployment)."
grain: [app, source, day]
"""
CREATE_SQL = """\
create table if not exists daily_clicks (
    app varchar not null,
    source varchar not null,
    day date not null,
    clicks bigint not null,
    silver_version bigint,
    primary key (app, source, day)
);
"""
INSERT_SQL = """\
insert into daily_clicks (app, source, day, clicks)
select events.app, events.source, events.day, count(*) filter (where events.event_type = 'click')
from people_events as events
inner join refresh_days as refresh
    on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
where events.day between $first_day and $last_day
group by all
"""
VIEWS_SQL = """\
create or replace view clicks_per_day as
select app, day, sum(clicks) as clicks from daily_clicks group by app, day;
"""
EXPECTATIONS = """\
{
  "name": "daily_clicks",
  "expectations": [
    {
      "type": "expect_column_values_to_be_between",
      "kwargs": {"column": "clicks", "min_value": 0},
      "meta": {"check": "daily_clicks_clicks_not_negative", "description": "clicks >= 0"}
    }
  ]
}
"""


def add_daily_clicks(root: Path) -> None:
    folder = root / "daily_clicks"
    folder.mkdir(parents=True)
    (folder / "mart.yaml").write_text(MART_YAML)
    (folder / "create.sql").write_text(CREATE_SQL)
    (folder / "insert.sql").write_text(INSERT_SQL)
    (folder / "views.sql").write_text(VIEWS_SQL)
    (folder / "expectations.json").write_text(EXPECTATIONS)


def test_a_mart_folder_becomes_an_asset_a_check_a_table_and_a_serving_view(
    env: Env, tmp_path: Path, setting: Callable[[str, str], None]
) -> None:
    extra = tmp_path / "marts"
    add_daily_clicks(extra)
    setting("EVENTLAKE_EXTRA_MARTS_DIR", str(extra))

    graph = build_definitions(env.settings()).resolve_asset_graph()
    assert dg.AssetKey("daily_clicks") in graph.get_all_asset_keys()
    assert dg.AssetCheckKey(dg.AssetKey("daily_clicks"), "invariants") in graph.asset_check_keys
    assert dg.AssetKey("daily_clicks") in graph.get(dg.AssetKey("serving_snapshot")).parent_keys

    at = datetime(2024, 5, 1, 10, tzinfo=UTC)
    env.lake.append(
        EVENTS,
        silver_table(
            [
                {"timestamp": at, "event_type": "click", "user_id": "u1"},
                {"timestamp": at, "event_type": "click", "user_id": "u2"},
                {"timestamp": at, "event_type": "page_view", "user_id": "u1"},
            ]
        ),
    )
    result = materialize_all(env)
    check = next(c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("daily_clicks"))
    assert check.passed and check.metadata["expectations"].value == 1

    con = duckdb.connect(str(env.serving), read_only=True)
    try:
        assert con.execute("select app, day, clicks from clicks_per_day").fetchall() == [("a", at.date(), 2)]
    finally:
        con.close()
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        # row-level lineage stamped by the shared refresh: the silver version the row was computed from
        version = env.lake.version(EVENTS)
        assert con.execute("select clicks, silver_version from daily_clicks").fetchall() == [(2, version)]
    finally:
        con.close()


def test_a_malformed_mart_folder_is_refused_with_its_name_and_what_is_wrong(tmp_path: Path) -> None:
    add_daily_clicks(tmp_path)
    (tmp_path / "daily_clicks" / "insert.sql").unlink()
    with pytest.raises(MartError, match="mart daily_clicks: missing insert.sql"):
        load_marts([tmp_path])
    (tmp_path / "daily_clicks" / "insert.sql").write_text(INSERT_SQL)
    (tmp_path / "daily_clicks" / "mart.yaml").write_text(MART_YAML + "windo_days: 7\n")
    with pytest.raises(MartError, match="(?s)mart daily_clicks: mart.yaml is invalid.*windo_days"):
        load_marts([tmp_path])
    (tmp_path / "daily_clicks" / "mart.yaml").write_text(MART_YAML + "reads: [daily_klicks]\n")
    with pytest.raises(MartError, match="reads 'daily_klicks', which is neither a mart nor user_attributes"):
        load_marts([tmp_path])


def test_a_mart_may_not_take_a_shipped_marts_name(tmp_path: Path) -> None:
    shipped = catalog()["daily_page_views"].folder
    copy = tmp_path / "daily_page_views"
    copy.mkdir()
    for file in shipped.iterdir():
        if file.is_file():
            (copy / file.name).write_text(file.read_text())
    with pytest.raises(MartError, match="mart daily_page_views is defined twice"):
        catalog.__wrapped__(tmp_path)
