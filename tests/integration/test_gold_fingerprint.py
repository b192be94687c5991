"""Behaviour guard for restructurings: gold and the serving snapshot built from the bundled samples
hash, table by table, to the values recorded from the code before (issue 23).

Built as ``make up`` builds them: the four samples replayed through the API as the local source, the
ecom users source, one materialization. Each table's hash covers its rows sorted, floats rounded to
9 significant digits (parallel aggregation may change the last bits), and leaves out what records
when or by which run a row was written: lineage versions (``silver_version``, ``bronze_version``,
``quarantine_version``, ``version``), ``updated_at``, how a lake table is stored
(``pipeline_freshness``'s ``files`` and ``bytes``), and ``data_quality_daily``'s ``day`` (the day the
replay received the events: today). A deliberate change of a mart's numbers updates ``RECORDED``,
with the reason in the commit; a new table adds its hash.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from pipelines.cli.replay import replay
from tests.conftest import SAMPLES, ApiServer, Env, materialize_all

pytestmark = pytest.mark.integration

FILES = ("web_access_2015.log", "onlineshop_2019.csv", "ecom_scenarios_2024.csv.gz", "ui_demo.ndjson")
LINEAGE = {"silver_version", "bronze_version", "quarantine_version", "version", "updated_at", "files", "bytes"}
WHEN_RECEIVED = {("data_quality_daily", "day")}

#: Recorded on bfe4642 (main after issue 22), before the restructuring of issue 23.
RECORDED: dict[str, dict[str, str]] = {
    "serving": {
        "active_users_breakdown": "3565 rows e11f8e7d4cb566fe",
        "bot_share_daily": "364 rows cbeec4e7a25ee78c",
        "component_interactions": "4 rows 74f408837f417ce0",
        "daily_active_users": "365 rows 4ab75b11a388257d",
        "daily_event_counts": "4552 rows e32d41662c7fe5cc",
        "daily_page_views": "624 rows 774292728d1ccae7",
        "daily_sessions": "364 rows 887eb58f670b7036",
        "data_quality_daily": "7 rows 003e3da58905896a",
        "error_groups": "3 rows 9d983e98bb1c095c",
        "error_summary": "4 rows af19ffb3b2dd1d75",
        "events_by_type_daily": "4545 rows a11f1653540abeea",
        "form_progress": "12 rows 212d930bb601fd55",
        "funnel_steps": "2248 rows 55f2b5b10e68e367",
        # issue 25: the definitions of the marts that append a micro-batch (their people states)
        "gold_watermarks": "18 rows ffb4ff0203653d5c",
        "monthly_active_users": "365 rows 98783d27ff68c343",
        "overview_daily": "365 rows bf8205cd04fa3e3e",
        # issue 26: each lake table's tier (its files and bytes are storage, left out)
        "pipeline_freshness": "21 rows e4a2af09e1d459d3",
        "retention_cohorts": "730 rows abbfb5156e87d6e3",
        "weekly_active_users": "365 rows bdef97e4e9ee82f3",
    },
    "warehouse": {
        "active_person_days": "11050 rows 212143fd1f62b352",
        "active_person_weeks": "9935 rows 74b12cce2f762e0e",
        "active_users_breakdown": "3565 rows e11f8e7d4cb566fe",
        # issue 25: who each row of the marts that append a micro-batch counted
        "active_users_breakdown_people": "66089 rows 43817d8a07104553",
        "anonymous_days": "0 rows 49bf2d3415c97252",
        "component_interactions": "4 rows 74f408837f417ce0",
        "component_interactions_people": "6 rows a65bc02cc0ba06b3",
        "daily_active_users": "365 rows 4ab75b11a388257d",
        "daily_event_counts": "4552 rows e32d41662c7fe5cc",
        "daily_event_counts_people": "41222 rows 3c09665fd7dfcbec",
        "daily_page_views": "624 rows 774292728d1ccae7",
        "daily_page_views_people": "1717 rows 26f3eedc73baa4a7",
        "daily_sessions": "364 rows 887eb58f670b7036",
        "data_quality_daily": "7 rows 003e3da58905896a",
        "error_summary": "4 rows af19ffb3b2dd1d75",
        "error_summary_people": "6 rows 4ce9fb5cea7f6330",
        "first_seen_moves": "0 rows 1c503ffa36b4fa88",
        "form_progress": "12 rows 212d930bb601fd55",
        "form_progress_people": "23 rows 9970e80564e750a2",
        "funnel_steps": "2248 rows 55f2b5b10e68e367",
        "gold_recompute_days": "0 rows 65bf501d2e6df30d",  # issue 26: an erasure's days, none here
        "gold_watermarks": "18 rows ffb4ff0203653d5c",  # issue 25, as in the snapshot
        "identity_links": "3605 rows da6de498ad913df3",
        "monthly_active_users": "365 rows 98783d27ff68c343",
        "person_first_seen": "5353 rows 04233f69c01efcd8",
        "person_last_active": "5353 rows 88efca597cf093c2",
        "rescrub_count_changes": "0 rows be79d39a52a93e43",  # issue 29: a rescrub's cold count changes
        "retention_cohorts": "730 rows abbfb5156e87d6e3",
        "sessions": "11353 rows 66bcbe5576640286",  # issue 25: its person_id
        "weekly_active_users": "365 rows bdef97e4e9ee82f3",
    },
}


def _value(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.9g}"
    return repr(value)


def table_hashes(path: Path) -> dict[str, str]:
    """``{table: sha256 of its sorted rows}`` of a DuckDB file, as the module docstring says."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        hashes = {}
        tables = [name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()]
        for table in sorted(tables):
            columns = [
                name
                for (name,) in con.execute(
                    "select column_name from information_schema.columns where table_name = ? order by column_name",
                    [table],
                ).fetchall()
                if name not in LINEAGE and (table, name) not in WHEN_RECEIVED
            ]
            select = ", ".join(f'"{name}"' for name in columns)
            rows = sorted(
                "\t".join(map(_value, row)) for row in con.execute(f'select {select} from "{table}"').fetchall()
            )
            digest = hashlib.sha256("\n".join([",".join(columns), *rows]).encode()).hexdigest()[:16]
            hashes[table] = f"{len(rows)} rows {digest}"
        return hashes
    finally:
        con.close()


def test_gold_and_serving_from_the_samples_are_unchanged(
    api: ApiServer, env: Env, setting: Callable[[str, str], None]
) -> None:
    setting("EVENTLAKE_USERS_PATH", str(SAMPLES / "ecom_scenarios_2024_users.csv"))
    replay([SAMPLES / name for name in FILES], api.url, api.key, progress=False)
    materialize_all(env)
    built = {"warehouse": table_hashes(env.warehouse), "serving": table_hashes(env.serving)}
    differing = {
        f"{layer}.{table}": (built[layer].get(table), RECORDED[layer].get(table))
        for layer in RECORDED
        for table in sorted({*built[layer], *RECORDED[layer]})
        if built[layer].get(table) != RECORDED[layer].get(table)
    }
    assert not differing, f"(built, recorded) by table: {differing}"
