"""The bronze sensor against a real lake: run when silver is behind, skip when caught up."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
import pytest

from pipelines.defs.ingest import (
    BRONZE_RANGE_TAG,
    HEARTBEAT_TAG,
    HOT_PATH_JOB,
    HOT_PATH_TAG,
    MICRO_BATCHES_TAG,
    bronze_sensor_definition,
)
from tests.conftest import Env, materialize_all
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration


def append_bronze(env: Env, n: int) -> int:
    ctx = RequestContext(received_at=datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [
        r
        for i in range(n)
        for r in explode_payload({"uuid": f"s{i}", "timestamp": "2024-01-01T00:00:00Z", "user": "u"}, ctx)
    ]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def evaluate(
    env: Env, instance: dg.DagsterInstance, cursor: str | None = None, keep_alive: bool = False, retry_base_s: float = 5
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=env.resources())
    return bronze_sensor_definition(2, keep_alive=keep_alive, retry_base_s=retry_base_s)(context)


def ranges(result: dg.SensorResult | dg.SkipReason) -> list[str]:
    """The bronze ranges of the hot path runs ``result`` requests."""
    assert isinstance(result, dg.SensorResult)
    return [request.tags[BRONZE_RANGE_TAG] for request in result.run_requests or []]


def test_sensor_requests_a_run_per_new_bronze_version_and_then_skips(env: Env) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(evaluate(env, instance), dg.SkipReason)  # no bronze table yet

    version = append_bronze(env, 3)
    result = evaluate(env, instance)
    assert ranges(result) == [f"v0-v{version}"]
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == str(version)
    assert result.asset_events and result.asset_events[0].metadata["delta_version"].value == version

    materialize_all(env)
    caught_up = evaluate(env, instance, cursor=str(version))
    assert isinstance(caught_up, dg.SensorResult)
    assert not caught_up.run_requests
    assert not caught_up.asset_events  # this version was already observed
    # Kept alive (EVENTLAKE_HOT_PATH_IDLE_S=0, the default), a hot path is started with nothing behind.
    assert ranges(evaluate(env, instance, cursor=str(version), keep_alive=True)) == [f"none (up to date at v{version})"]


def test_a_backlog_left_behind_gets_a_run_request_of_its_own(env: Env) -> None:
    """Regression: the run key named bronze's version only. Silver takes a backlog in bounded
    micro-batches, so a hot path that stopped at its lifetime limit could leave part of one; the next
    request had the same key, Dagster dropped it, and the rest waited for new events."""
    instance = dg.DagsterInstance.ephemeral()
    first = append_bronze(env, 2)
    latest = append_bronze(env, 2)
    before = evaluate(env, instance)
    env.lake.advance_watermark(EVENTS.name, RAW_EVENTS.name, first, "a bounded micro-batch")
    after = evaluate(env, instance, cursor=str(latest))
    assert (ranges(before), ranges(after)) == ([f"v0-v{latest}"], [f"v{first + 1}-v{latest}"])
    assert isinstance(before, dg.SensorResult) and isinstance(after, dg.SensorResult)
    assert {r.run_key for r in before.run_requests or []} != {r.run_key for r in after.run_requests or []}


def hot_path_run(run_id: str, status: dg.DagsterRunStatus, heartbeat: float | None = None) -> dg.DagsterRun:
    tags = {HEARTBEAT_TAG: f"{heartbeat:.3f}"} if heartbeat is not None else {}
    return dg.DagsterRun(job_name=HOT_PATH_JOB, run_id=run_id, status=status, tags=tags)


@pytest.mark.parametrize("job_name", ["hot_path", "ingest_to_gold"])
def test_sensor_waits_while_a_run_that_carries_bronze_to_gold_is_in_flight(env: Env, job_name: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    version = append_bronze(env, 1)
    tags = {HEARTBEAT_TAG: f"{time.time():.3f}"} if job_name == HOT_PATH_JOB else {}
    instance.add_run(dg.DagsterRun(job_name=job_name, run_id="r1", status=dg.DagsterRunStatus.STARTED, tags=tags))
    result = evaluate(env, instance)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    assert "in flight" in str(result.skip_reason)

    # Once it ended, the next tick starts the hot path for what is still behind.
    instance.handle_run_event("r1", dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=job_name))
    assert ranges(evaluate(env, instance, cursor=str(version))) == [f"v0-v{version}"]


def test_a_failed_hot_path_is_retried_for_the_same_bronze_without_new_events(env: Env) -> None:
    """Regression: the run key named only the bronze range, so a launch that failed (during a
    shutdown) spent it; every later tick skipped the range as already requested, and gold stayed
    stale until a new event changed the key."""
    instance = dg.DagsterInstance.ephemeral()
    version = append_bronze(env, 1)
    first = evaluate(env, instance, retry_base_s=0.5)
    instance.add_run(hot_path_run("failed", dg.DagsterRunStatus.STARTED, heartbeat=time.time()))
    instance.report_run_failed(instance.get_run_by_id("failed"), "the stack was shutting down")

    backing_off = evaluate(env, instance, cursor=str(version), retry_base_s=0.5)
    assert isinstance(backing_off, dg.SensorResult) and not backing_off.run_requests
    assert "1 hot path run(s) failed in a row" in str(backing_off.skip_reason)
    time.sleep(0.6)
    retry = evaluate(env, instance, cursor=str(version), retry_base_s=0.5)
    assert ranges(first) == ranges(retry) == [f"v0-v{version}"]
    assert isinstance(first, dg.SensorResult) and isinstance(retry, dg.SensorResult)
    assert [r.run_key for r in first.run_requests or []] != [r.run_key for r in retry.run_requests or []]

    # A second failure in a row doubles the wait (1 s), a success resets it.
    instance.add_run(hot_path_run("failed-again", dg.DagsterRunStatus.STARTED, heartbeat=time.time()))
    instance.report_run_failed(instance.get_run_by_id("failed-again"), "again")
    time.sleep(0.6)
    assert "2 hot path run(s)" in str(evaluate(env, instance, cursor=str(version), retry_base_s=0.5).skip_reason)
    time.sleep(0.6)
    assert ranges(evaluate(env, instance, cursor=str(version), retry_base_s=0.5)) == [f"v0-v{version}"]

    # A run that completed micro-batches before it failed is a new incident: back to the first wait.
    worked = hot_path_run("worked", dg.DagsterRunStatus.STARTED, heartbeat=time.time())
    instance.add_run(worked.with_tags({**worked.tags, MICRO_BATCHES_TAG: "12"}))
    instance.report_run_failed(instance.get_run_by_id("worked"), "its process died")
    assert "1 hot path run(s)" in str(evaluate(env, instance, cursor=str(version), retry_base_s=0.5).skip_reason)
    # A stop (canceled) is no failure: no wait at all.
    instance.add_run(hot_path_run("stopped", dg.DagsterRunStatus.CANCELED))
    assert ranges(evaluate(env, instance, cursor=str(version), retry_base_s=0.5)) == [f"v0-v{version}"]


def test_after_a_failure_a_hot_path_is_started_even_with_nothing_new_in_bronze(env: Env) -> None:
    """Regression: a micro-batch that failed after silver committed left gold behind silver; with
    bronze caught up, nothing started a hot path to finish it until a new event arrived."""
    instance = dg.DagsterInstance.ephemeral()
    version = append_bronze(env, 1)
    env.lake.advance_watermark(EVENTS.name, RAW_EVENTS.name, version, "silver committed, gold failed")
    assert not ranges(evaluate(env, instance, retry_base_s=0.1))  # nothing behind, not kept alive
    instance.add_run(hot_path_run("failed", dg.DagsterRunStatus.STARTED, heartbeat=time.time()))
    instance.report_run_failed(instance.get_run_by_id("failed"), "the gold step failed")
    time.sleep(0.2)
    assert ranges(evaluate(env, instance, retry_base_s=0.1)) == [f"none (up to date at v{version})"]


def test_a_hot_path_whose_heartbeat_stopped_is_failed_with_its_micro_batch_and_replaced(env: Env) -> None:
    """A ``kill -9`` of the hot path's process leaves it and its micro-batch STARTED forever: the
    sensor skipped them as in flight and gold stayed stale."""
    instance = dg.DagsterInstance.ephemeral()
    version = append_bronze(env, 1)
    instance.add_run(hot_path_run("alive", dg.DagsterRunStatus.STARTED, heartbeat=time.time() - 5))
    assert not ranges(evaluate(env, instance, retry_base_s=0.1))  # a recent heartbeat: in flight
    instance.handle_run_event("alive", dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=HOT_PATH_JOB))

    instance.add_run(hot_path_run("killed", dg.DagsterRunStatus.STARTED, heartbeat=time.time() - 60))
    child = dg.DagsterRun(
        job_name="ingest_to_gold", run_id="child", status=dg.DagsterRunStatus.STARTED, tags={HOT_PATH_TAG: "killed"}
    )
    instance.add_run(child)
    evaluate(env, instance, retry_base_s=0.1)
    assert [instance.get_run_by_id(run_id).status for run_id in ("killed", "child")] == [
        dg.DagsterRunStatus.FAILURE
    ] * 2
    time.sleep(0.2)
    assert ranges(evaluate(env, instance, cursor=str(version), retry_base_s=0.1)) == [f"v0-v{version}"]
