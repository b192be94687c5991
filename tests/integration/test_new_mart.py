"""A mart is one folder: dropped into the extra marts directory, it becomes an asset with its check,
a warehouse table and a serving view, with no other file changed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.defs import build_definitions
from tests.conftest import INSERT_SQL, MART_YAML, Env, add_daily_clicks, materialize_all, silver_table
from warehouse.lake.tables import EVENTS
from warehouse.marts import MartError, catalog, load_marts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


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


def test_make_up_refuses_a_malformed_mart_at_once(tmp_path: Path) -> None:
    # From the new-user trial: a typo in a mart.yaml left `make demo` waiting 900 s for gold, the
    # cause only in the Dagster logs.
    folder = add_daily_clicks(tmp_path / "marts")
    (folder / "mart.yaml").write_text(MART_YAML.replace("grain:", "grian:"))
    env = {
        **os.environ,
        "EVENTLAKE_DATA_DIR": str(tmp_path / "data"),
        "EVENTLAKE_EXTRA_MARTS_DIR": str(tmp_path / "marts"),
        "EVENTLAKE_SUPERSET": "0",
    }
    done = subprocess.run(
        [sys.executable, "scripts/stack.py", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "ERROR: mart daily_clicks: mart.yaml is invalid" in done.stdout and "grian" in done.stdout
    assert not (tmp_path / "data" / "run").exists()  # nothing was started


@pytest.mark.parametrize("script", ["eventlake-status", "eventlake-sources", "eventlake-types", "eventlake-replay"])
def test_a_cli_refuses_an_invalid_setting_with_its_name(tmp_path: Path, script: str) -> None:
    args = {"eventlake-sources": ["list"], "eventlake-types": ["list"], "eventlake-replay": ["x.ndjson"]}.get(
        script, []
    )
    env = {**os.environ, "EVENTLAKE_DATA_DIR": str(tmp_path), "EVENTLAKE_REPORTING_TIMEZONE": "Mars/Base"}
    done = subprocess.run(
        [Path(sys.executable).parent / script, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"{script}: invalid settings" in done.stderr and "Mars/Base" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_api_refuses_an_invalid_setting_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "EVENTLAKE_DATA_DIR": str(tmp_path), "EVENTLAKE_REPORTING_TIMEZONE": "Mars/Base"}
    command = [sys.executable, "-m", "uvicorn", "ingest_api.main:app", "--port", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ingest API: invalid settings" in done.stderr and "Mars/Base" in done.stderr
    assert "Traceback" not in done.stderr
