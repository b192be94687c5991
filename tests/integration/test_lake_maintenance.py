"""The lake's maintenance run over a pipeline's real tables: consumers' floors from the serving
snapshot, and every table still read exactly after compaction, log expiry and vacuum."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.definitions_maintenance import build_maintenance_definitions
from pipelines.defs.maintenance import prune_check_executions, prune_runs
from pipelines.maintenance import MaintenancePolicy, consumer_floors, maintain_lake
from tests.conftest import Env, materialize_all
from warehouse import gold
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.maintenance import compact_closed
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

pytestmark = pytest.mark.integration

POLICY = MaintenancePolicy(
    retention=timedelta(0), log_retention=timedelta(0), target_file_bytes=64 * 1024 * 1024, open_days=0
)


def append_bronze(env: Env, received: datetime, prefix: str, n: int) -> int:
    ctx = RequestContext(received_at=received, user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [
        row
        for i in range(n)
        for row in explode_payload(
            {"uuid": f"{prefix}{i}", "timestamp": "2024-03-04T10:00:00Z", "user": f"u{i}", "events": {"page_view": {}}},
            ctx,
        )
    ]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def test_floors_follow_the_slowest_consumer_and_keep_everything_before_a_snapshot(env: Env) -> None:
    assert consumer_floors(env.lake, env.serving) == {"raw_events": -1, "events": -1, "rejected_events": -1}
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for batch in range(3):
        append_bronze(env, yesterday, f"b{batch}-", 4)
        materialize_all(env)
    floors = consumer_floors(env.lake, env.serving)
    assert floors["raw_events"] == env.lake.watermark(EVENTS.name, RAW_EVENTS.name)
    con = gold.connect(env.serving, read_only=True)
    lowest = con.execute("select min(silver_version) from gold_watermarks").fetchone()
    con.close()
    assert lowest is not None and floors["events"] == lowest[0]


def test_maintenance_compacts_and_cleans_while_gold_and_silver_stay_exact(env: Env) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for batch in range(4):
        append_bronze(env, yesterday, f"y{batch}-", 5)
        materialize_all(env)
    before = {t.name: env.lake.dataset(t).count_rows() for t in (RAW_EVENTS, EVENTS, REJECTED_EVENTS)}

    reports = {report.table: report for report in maintain_lake(env.lake, env.serving, POLICY) if report.tier == "hot"}
    bronze = reports["raw_events"]
    assert bronze.before.files == 4 and bronze.after.files == 1 and bronze.compacted
    assert {t.name: env.lake.dataset(t).count_rows() for t in (RAW_EVENTS, EVENTS, REJECTED_EVENTS)} == before

    # New events after maintenance: silver reads exactly them (the compaction commit adds no rows).
    append_bronze(env, datetime.now(UTC), "new-", 3)
    materialize_all(env)
    assert env.lake.dataset(EVENTS).count_rows() == before["events"] + 3
    con = gold.connect(env.warehouse, read_only=True)
    counted = con.execute("select sum(events) from daily_event_counts").fetchone()
    con.close()
    assert counted is not None and counted[0] == before["events"] + 3


def test_the_maintain_lake_job_reports_each_table_in_the_ui(env: Env) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for batch in range(3):
        append_bronze(env, yesterday, f"j{batch}-", 2)
    materialize_all(env)
    job = build_maintenance_definitions(env.settings()).resolve_job_def("maintain_lake")
    config = {
        "ops": {
            "maintain_tables": {
                "config": {"retention_h": 0.05, "log_retention_minutes": 0, "target_file_mb": 64, "silver_open_days": 0}
            },
            "prune_dagster_runs": {"config": {"run_retention_days": 7}},
        }
    }
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=config)
    assert result.success
    observed = {
        event.asset_observation_data.asset_observation.asset_key.to_user_string(): {
            key: value.value for key, value in event.asset_observation_data.asset_observation.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }
    assert {"raw_events", "events", "watermarks"} <= set(observed)
    assert observed["raw_events"]["files_before"] == 3 and observed["raw_events"]["files_after"] == 1
    assert observed["raw_events"]["consumer_floor_version"] == env.lake.watermark(EVENTS.name, RAW_EVENTS.name)


def test_finished_runs_past_retention_are_deleted_with_their_event_and_compute_logs(tmp_path: Path) -> None:
    @dg.asset
    def thing(context) -> None:  # noqa: ANN001 (Dagster reads the annotation; this module postpones them)
        print("captured")  # noqa: T201 (a compute log to delete)
        context.log.info("logged")

    @dg.asset_check(asset=thing)
    def thing_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    check = dg.AssetCheckKey(dg.AssetKey("thing"), "thing_ok")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:

        def run() -> str:
            return dg.materialize([thing, thing_ok], instance=instance).run_id

        def checked() -> list[str]:
            return [r.run_id for r in instance.event_log_storage.get_asset_check_execution_history(check, limit=10)]

        old = [run() for _ in range(3)]
        cutoff = datetime.now(UTC)
        time.sleep(0.05)
        kept = run()
        # a run deleted some other way (the UI, or by this job before it pruned check executions)
        stray = run()
        instance.delete_run(stray)
        shards = tmp_path / "history" / "runs"
        assert all((shards / f"{run_id}.db").exists() for run_id in old)
        assert len(checked()) == 5

        assert prune_runs(instance, cutoff) == 3
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [kept]
        assert not any((shards / f"{run_id}.db").exists() for run_id in old)
        assert (shards / f"{kept}.db").exists()
        assert instance.all_logs(kept)
        # Dagster's delete_run leaves the checks' executions: 4 of deleted runs, deleted here
        assert len(checked()) == 5
        assert prune_check_executions(instance) == 4
        assert checked() == [kept]
        assert prune_runs(instance, cutoff) == 0
        assert prune_check_executions(instance) == 0


def _compact_for(root: str, seconds: float) -> int:
    """Compact every partition of bronze again and again for ``seconds``; how many compactions ran."""
    lake, runs = Lake(root), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs += bool(compact_closed(lake, RAW_EVENTS, date.max, 64 * 1024 * 1024))
    return runs


def test_two_processes_compacting_one_partition_under_appends_keep_every_row_once(env: Env) -> None:
    """delta-rs 1.6 commits two compactions of the same files side by side (each row twice after
    them); the rewrite lock keeps them one at a time."""
    append_bronze(env, datetime.now(UTC), "seed-", 2)
    appended = 2
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [pool.submit(_compact_for, env.lake_root, 6) for _ in range(2)]
        while not all(run.done() for run in runs):
            append_bronze(env, datetime.now(UTC), f"a{appended}-", 2)
            appended += 2
        assert all(run.result() > 0 for run in runs)
    ids = env.lake.dataset(RAW_EVENTS).to_table(columns=["event_id"])["event_id"]
    assert len(ids) == len(pc.unique(ids)) == appended
