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
        "active_users_breakdown": "3599 rows 3b268fae2b4db4b7",
        "bot_share_daily": "364 rows bb485dd08d8af517",
        "component_interactions": "4 rows 74f408837f417ce0",
        "daily_active_users": "365 rows bc68976f6dc172f8",
        "daily_event_counts": "4552 rows e4a0c6a7969085e8",
        "daily_page_views": "1496 rows ed095e97bcbf0537",
        "daily_sessions": "364 rows 6569f33baccaed18",
        "data_quality_daily": "6 rows 3f39976d78d88ae1",
        "error_groups": "3 rows 9d983e98bb1c095c",
        "error_summary": "4 rows af19ffb3b2dd1d75",
        "events_by_type_daily": "4545 rows 4b99b4d81cc2d067",
        "form_progress": "12 rows 212d930bb601fd55",
        "funnel_steps": "2248 rows 55f2b5b10e68e367",
        # issue 25: the definitions of the marts that append a micro-batch (their people states)
        "gold_watermarks": "18 rows ffb4ff0203653d5c",
        "monthly_active_users": "365 rows aa407a8369e13adf",
        "overview_daily": "365 rows f68f53c4882044cc",
        # issue 26: each lake table's tier (its files and bytes are storage, left out)
        "pipeline_freshness": "21 rows e4a2af09e1d459d3",
        "retention_cohorts": "730 rows 62d2dc4a6049509d",
        "weekly_active_users": "365 rows 348c47c9fd234c67",
    },
    "warehouse": {
        "active_person_days": "11518 rows 376f1b94812f3e5c",
        "active_person_weeks": "10374 rows 46df631e115a320f",
        "active_users_breakdown": "3599 rows 3b268fae2b4db4b7",
        # issue 25: who each row of the marts that append a micro-batch counted
        "active_users_breakdown_people": "68470 rows 37fd314a2bd2a659",
        "anonymous_days": "0 rows 49bf2d3415c97252",
        "component_interactions": "4 rows 74f408837f417ce0",
        "component_interactions_people": "6 rows a65bc02cc0ba06b3",
        "daily_active_users": "365 rows bc68976f6dc172f8",
        "daily_event_counts": "4552 rows e4a0c6a7969085e8",
        "daily_event_counts_people": "41750 rows de3c4850e1f15c97",
        "daily_page_views": "1496 rows ed095e97bcbf0537",
        "daily_page_views_people": "6545 rows 7232471f25d38b61",
        "daily_sessions": "364 rows 6569f33baccaed18",
        "data_quality_daily": "6 rows 3f39976d78d88ae1",
        "error_summary": "4 rows af19ffb3b2dd1d75",
        "error_summary_people": "6 rows 4ce9fb5cea7f6330",
        "first_seen_moves": "0 rows 1c503ffa36b4fa88",
        "form_progress": "12 rows 212d930bb601fd55",
        "form_progress_people": "23 rows 9970e80564e750a2",
        "funnel_steps": "2248 rows 55f2b5b10e68e367",
        "gold_recompute_days": "0 rows 65bf501d2e6df30d",  # issue 26: an erasure's days, none here
        "gold_watermarks": "18 rows ffb4ff0203653d5c",  # issue 25, as in the snapshot
        "identity_links": "3605 rows da6de498ad913df3",
        "monthly_active_users": "365 rows aa407a8369e13adf",
        "person_first_seen": "5778 rows b0faaad9f56f98db",
        "person_last_active": "5778 rows 6fdf04c7618c9144",
        "retention_cohorts": "730 rows 62d2dc4a6049509d",
        "sessions": "11940 rows ade9a5cbb95563bb",  # issue 25: its person_id
        "weekly_active_users": "365 rows 348c47c9fd234c67",
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
