"""The bronze sensor against a real lake: run when silver is behind, skip when caught up."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
import pytest

from pipelines.defs.ingest import bronze_sensor_definition
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


def evaluate(env: Env, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=env.resources())
    return bronze_sensor_definition(2)(context)


def test_sensor_requests_a_run_per_new_bronze_version_and_then_skips(env: Env) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(evaluate(env, instance), dg.SkipReason)  # no bronze table yet

    version = append_bronze(env, 3)
    result = evaluate(env, instance)
    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [f"raw_events@v0-v{version}"]
    assert result.cursor == str(version)
    assert result.asset_events and result.asset_events[0].metadata["delta_version"].value == version

    materialize_all(env)
    caught_up = evaluate(env, instance, cursor=str(version))
    assert isinstance(caught_up, dg.SensorResult)
    assert not caught_up.run_requests
    assert not caught_up.asset_events  # this version was already observed


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
    assert isinstance(before, dg.SensorResult) and isinstance(after, dg.SensorResult)
    keys = [r.run_key for r in before.run_requests or []], [r.run_key for r in after.run_requests or []]
    assert keys == ([f"raw_events@v0-v{latest}"], [f"raw_events@v{first + 1}-v{latest}"])


@pytest.mark.parametrize("job_name", ["hot_path", "ingest_to_gold"])
def test_sensor_waits_while_a_run_that_carries_bronze_to_gold_is_in_flight(env: Env, job_name: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    version = append_bronze(env, 1)
    instance.add_run(dg.DagsterRun(job_name=job_name, run_id="r1", status=dg.DagsterRunStatus.STARTED))
    result = evaluate(env, instance)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    assert "in flight" in str(result.skip_reason)

    # Once it ended, the next tick starts the hot path for what is still behind.
    instance.handle_run_event("r1", dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=job_name))
    result = evaluate(env, instance, cursor=str(version))
    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [f"raw_events@v0-v{version}"]
