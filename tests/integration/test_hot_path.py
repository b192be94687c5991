"""The long-lived hot path against a real lake, DuckDB files and Dagster instance."""

from __future__ import annotations

import fcntl
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from pipelines.cli.status import covered_bronze_version
from pipelines.defs import build_definitions, hot_path
from pipelines.defs.hot_path import CODE_LOCATION_TAG, _queued_elsewhere
from pipelines.defs.ingest import BRONZE_VERSION_TAG, HOT_PATH_TAG
from tests.conftest import Env
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import EVENTS, RAW_EVENTS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import stack  # noqa: E402

pytestmark = pytest.mark.integration


def append_bronze(env: Env, prefix: str, n: int) -> int:
    ctx = RequestContext(received_at=datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [
        r
        for i in range(n)
        for r in explode_payload(
            {"uuid": f"{prefix}{i}", "event": "page_view", "timestamp": "2024-01-01T00:00:00Z", "user": f"u{i}"}, ctx
        )
    ]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def file_instance(env: Env) -> dg.DagsterInstance:
    """A Dagster instance on SQLite files, as the stack's: the hot path's heartbeat thread writes to it
    while the run does. Regression: the ephemeral instance's in-memory SQLite failed that on CI's
    loaded cores ("database table is locked: runs")."""
    home = env.data_dir / "dagster"
    home.mkdir(exist_ok=True)
    return dg.DagsterInstance.local_temp(tempdir=str(home))


def run_hot_path(
    env: Env, instance: dg.DagsterInstance, warehouse: Path | None = None, **config: float
) -> dg.ExecuteInProcessResult:
    settings = env.settings().model_copy(update={"warehouse_path": warehouse or env.warehouse})
    return (
        build_definitions(settings)
        .resolve_job_def("hot_path")
        .execute_in_process(
            instance=instance,
            run_config={"ops": {"stream_to_gold": {"config": {"poll_interval_s": 0.2, **config}}}},
            raise_on_error=False,
        )
    )


def micro_batches(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    records = instance.get_run_records(dg.RunsFilter(job_name="ingest_to_gold"), ascending=True)
    return [record.dagster_run for record in records]


def queued_run(job_name: str) -> dg.DagsterRun:
    """A run waiting in the queue, as the UI's Launch button leaves it (Dagster wants its code origin)."""
    location = RegisteredCodeLocationOrigin(location_name="pipelines.definitions")
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)
    return dg.DagsterRun(
        job_name=job_name, run_id="queued", status=dg.DagsterRunStatus.QUEUED, remote_job_origin=origin
    )


def stop_reason(result: dg.ExecuteInProcessResult) -> str:
    [output] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return str(output.step_output_data.metadata["stop_reason"].value)


def test_one_run_carries_each_new_micro_batch_to_gold_then_stops_when_bronze_is_idle(env: Env) -> None:
    instance = file_instance(env)
    first = append_bronze(env, "a", 3)
    late: list[int] = []

    def post_after_first_batch() -> None:
        # Watches the lake, not the instance: the run writes to the instance from its own threads.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == first:
                late.append(append_bronze(env, "b", 2))
                return
            time.sleep(0.1)

    poster = threading.Thread(target=post_after_first_batch)
    poster.start()
    # 10 s, not 3: on a loaded 2-core CI machine the second append once landed after a 3 s idle exit.
    result = run_hot_path(env, instance, idle_exit_s=10)
    poster.join()

    assert result.success
    runs = micro_batches(instance)
    # The event posted while the first micro-batch ran went through a second one in the same run.
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert {run.tags[HOT_PATH_TAG] for run in runs} == {result.run_id}
    assert result.output_for_node("stream_to_gold") == 2
    assert stop_reason(result) == "bronze idle for 10 s"
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == late[0]
    assert covered_bronze_version(env.serving) == late[0]
    assert env.lake.dataset(EVENTS).count_rows() == 5
    materialized = instance.fetch_materializations(dg.AssetKey("daily_active_users"), limit=10).records
    assert {record.run_id for record in materialized} == {run.run_id for run in runs}


def test_a_backlog_larger_than_a_micro_batch_is_caught_up_in_one_run(
    env: Env, setting: Callable[[str, str], None]
) -> None:
    instance = file_instance(env)
    versions = [append_bronze(env, prefix, 3) for prefix in "abc"]  # e.g. left while the pipeline was down
    setting("EVENTLAKE_SILVER_MAX_BATCH_ROWS", "4")
    result = run_hot_path(env, instance, idle_exit_s=1)

    assert result.success
    # Silver takes one 3-row commit per micro-batch (two would pass 4 rows); the loop goes on.
    assert result.output_for_node("stream_to_gold") == 3
    assert [int(run.tags[BRONZE_VERSION_TAG]) for run in micro_batches(instance)] == [versions[-1]] * 3
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == covered_bronze_version(env.serving) == versions[-1]
    assert env.lake.dataset(EVENTS).count_rows() == 9


def test_it_yields_to_a_queued_run_without_processing(env: Env) -> None:
    instance = file_instance(env)
    append_bronze(env, "a", 3)
    instance.add_run(queued_run("reprocess_silver"))

    result = run_hot_path(env, instance, idle_exit_s=60)

    assert result.success
    assert result.output_for_node("stream_to_gold") == 0
    assert stop_reason(result) == "another run is queued"
    assert micro_batches(instance) == []
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == -1  # left for the next run, not lost


def test_a_failed_micro_batch_fails_the_run_and_names_it(env: Env, tmp_path: Path) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(stack.dagster_yaml(postgres=False))  # the stack's instance: SQLite storage
    instance = dg.DagsterInstance.from_config(str(home))
    check = stack.failed_run_check(home, datetime.now(UTC), attempts=1)
    version = append_bronze(env, "a", 3)
    not_a_file = tmp_path / "warehouse_dir"
    not_a_file.mkdir()  # the gold steps cannot open a DuckDB file here

    result = run_hot_path(env, instance, warehouse=not_a_file, idle_exit_s=60)

    assert not result.success
    [failed] = micro_batches(instance)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    failure = result.get_step_failure_events()[0].step_failure_data
    assert failure.user_failure_data is not None
    assert failure.user_failure_data.metadata["failed_run_id"].value == failed.run_id
    assert failure.user_failure_data.metadata["bronze_version"].value == version
    # `make up` reports the micro-batch's own error, not only the hot path's pointer to it.
    with pytest.raises(stack.RunFailedError, match=rf"pipeline run {failed.run_id} failed: .*Is a directory"):
        check()


def test_a_hot_path_first_catches_gold_up_with_what_silver_committed_before_a_failure(env: Env, tmp_path: Path) -> None:
    """Regression: a micro-batch that failed after silver committed left gold behind; the next hot
    path compared bronze with silver only, found nothing to do, and gold waited for a new event."""
    instance = file_instance(env)
    version = append_bronze(env, "a", 3)
    not_a_file = tmp_path / "warehouse_dir"
    not_a_file.mkdir()  # the gold step cannot open a DuckDB file here: silver commits, gold fails
    assert not run_hot_path(env, instance, warehouse=not_a_file, idle_exit_s=60).success
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == version
    assert covered_bronze_version(env.serving) is None

    result = run_hot_path(env, instance, idle_exit_s=1)

    assert result.success and result.output_for_node("stream_to_gold") == 1
    assert covered_bronze_version(env.serving) == version
    assert env.lake.dataset(EVENTS).count_rows() == 3


def test_a_hot_path_waits_for_another_still_holding_the_lock_and_ends_if_it_was_marked_ended(
    env: Env, tmp_path: Path
) -> None:
    """Regression: a hot path that hung long enough for the sensor to fail it and start another
    resumed beside it; both processed the same bronze (every event twice in silver)."""
    instance = file_instance(env)
    lock = tmp_path / "hot_path.lock"
    instance.add_run(dg.DagsterRun(job_name="hot_path", run_id="waiting", status=dg.DagsterRunStatus.STARTED))
    entered = threading.Event()
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the hung one

        def replacement() -> None:
            with hot_path._sole_hot_path(lock, instance, "waiting"):
                entered.set()

        thread = threading.Thread(target=replacement)
        thread.start()
        time.sleep(1.2)
        assert not entered.is_set()  # waits while the other holds it
        fcntl.flock(held, fcntl.LOCK_UN)
        thread.join(timeout=10)
    assert entered.is_set()

    instance.add_run(dg.DagsterRun(job_name="hot_path", run_id="failed", status=dg.DagsterRunStatus.FAILURE))
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(dg.Failure, match="marked as ended"), hot_path._sole_hot_path(lock, instance, "failed"):
            pass


def test_a_queued_maintenance_run_does_not_stop_the_hot_path() -> None:
    # One run at a time per code location (the stack's run queue): the hot path yields to a queued
    # run of its own location only; lake maintenance runs beside it.
    instance = dg.DagsterInstance.ephemeral()
    for run_id, location in (("maintenance", "eventlake-maintenance"), ("other", "elsewhere")):
        queued = queued_run("maintain_lake")
        instance.add_run(queued._replace(run_id=run_id, tags={CODE_LOCATION_TAG: location}))
    assert not _queued_elsewhere(instance, "eventlake")
    assert _queued_elsewhere(instance, "eventlake-maintenance")
    assert _queued_elsewhere(instance, None)  # a run launched without a location: any queued run counts
