"""Dagster for a cluster: the stack's instance with its run, event-log and schedule storage in a real
PostgreSQL (``EVENTLAKE_DAGSTER_POSTGRES_URL``), carrying hot-path micro-batches to gold."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest

from tests.conftest import Env
from tests.integration.test_hot_path import append_bronze, micro_batches, run_hot_path
from warehouse.lake.tables import EVENTS, RAW_EVENTS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import stack_dagster  # noqa: E402

pytestmark = pytest.mark.integration


def test_hot_path_micro_batches_run_on_a_postgres_instance(
    env: Env, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTLAKE_DAGSTER_POSTGRES_URL", postgres.url)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(stack_dagster.dagster_yaml(postgres=True))
    assert postgres.url not in (home / "dagster.yaml").read_text()  # read from the environment only
    instance = dg.DagsterInstance.from_config(str(home))
    instance.upgrade()  # what `dagster instance migrate` does at the stack's start
    versions = [append_bronze(env, prefix, 3) for prefix in "ab"]
    monkeypatch.setenv("EVENTLAKE_SILVER_MAX_BATCH_ROWS", "3")  # one bronze commit per micro-batch
    result = run_hot_path(env, instance, idle_exit_s=1)

    assert result.success
    runs = micro_batches(instance)
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == versions[-1]
    with psycopg2.connect(postgres.dsn) as con, con.cursor() as cur:
        # the runs and their event logs are in Postgres, not in SQLite files under DAGSTER_HOME
        cur.execute("select count(*) from runs where pipeline_name = 'ingest_to_gold' and status = 'SUCCESS'")
        assert cur.fetchone() == (2,)
        cur.execute("select count(*) from event_logs where run_id = %s", (runs[0].run_id,))
        assert cur.fetchone()[0] > 10
    assert not list(home.rglob("*.db"))
