"""Silver's per-row stages on a real Ray cluster (two nodes, Daft's runner): the work is spread over
both nodes at once, and silver, the quarantine and gold are what the embedded path gives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pytest

from pipelines import parallel, transform
from pipelines.parallel import Parallelism, RowPool
from tests.conftest import ROOT, Env, materialize_all
from tests.integration.test_canary import payloads
from tests.unit.test_parallel import bronze
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

pytestmark = pytest.mark.integration

#: Where a run's own identity or clock shows, not its data.
RUN_COLUMNS = ("run_id", "quarantined_at")
RUN_SUFFIXES = ("_run_id", "refreshed_at", "updated_at")


def backlog(copies: int) -> pa.Table:
    """Bronze rows: the UI demo sample (forms, a sign-up funnel, errors) and the canary corpus
    (secrets in URLs, nested properties, stack traces) and an event from the future (quarantined),
    ``copies`` times over with new event ids, people and days."""
    sample = [orjson.loads(line) for line in (ROOT / "samples" / "ui_demo.ndjson").read_text().splitlines()]
    rows = []
    for copy in range(copies):
        ctx = RequestContext(received_at=datetime(2026, 11, 30, tzinfo=UTC), ip=f"203.0.113.{copy % 250}")
        shift = timedelta(days=copy % 20)
        future = {"uuid": "future", "timestamp": "2031-01-01T00:00:00Z", "app": "ui_demo", "events": {"view": {}}}
        for payload in [*sample, *payloads(), future]:
            stamp = datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00")) - shift
            event = {
                **payload,
                "uuid": f"{payload['uuid']}-{copy}",
                "user": f"{payload.get('user', 'anon')}-{copy % 300}",
                "timestamp": stamp.isoformat(),
            }
            rows.extend(explode_payload(event, ctx))
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


def watch_tasks(dashboard: str, stop: threading.Event, seen: list[list[tuple[str, str]]]) -> None:
    """Sample the cluster's running tasks (name, node id) through Ray's state API until ``stop``."""
    from ray.util.state import list_tasks  # noqa: PLC0415

    while not stop.is_set():
        running = list_tasks(
            address=dashboard, filters=[("state", "=", "RUNNING")], limit=1000, raise_on_missing_output=False
        )
        seen.append([(task.name, task.node_id or "") for task in running])
        time.sleep(0.1)


def lake_rows(env: Env, table: Any) -> pl.DataFrame:
    frame = pl.read_delta(env.lake.uri(table)).drop(RUN_COLUMNS, strict=False)
    return frame.sort("event_id", "bronze_version")


def gold_rows(env: Env) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        tables = [name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()]
        rows = {}
        for table in tables:
            described = con.execute(f'describe "{table}"').fetchall()
            columns = [f'"{c[0]}"' for c in described if c[0] not in RUN_COLUMNS and not c[0].endswith(RUN_SUFFIXES)]
            rows[table] = con.execute(f'select {", ".join(columns)} from "{table}" order by all').fetchall()
        return rows
    finally:
        con.close()


def test_silver_on_ray_runs_on_both_nodes_and_equals_the_embedded_path(
    ray_cluster: Any, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    setting("EVENTLAKE_PSEUDONYM_KEY", "one key for both lakes")
    bronze = backlog(1500)
    assert bronze.num_rows > 80_000
    embedded, on_ray = Env(tmp_path / "embedded"), Env(tmp_path / "ray")
    for env in (embedded, on_ray):
        env.data_dir.mkdir()
        env.lake.append(RAW_EVENTS, bronze)

    result = materialize_all(embedded)
    assert result.asset_materializations_for_node("silver_events")[0].metadata["engine"].value == "processes"

    setting("EVENTLAKE_RAY_ADDRESS", ray_cluster.address)
    setting("EVENTLAKE_SILVER_PARALLEL_MIN_ROWS", "1")
    on_the_cluster: list[str] = []  # the stages the run sent to Ray (it runs in this process)
    send = parallel._map_on_ray
    monkeypatch.setattr(
        parallel, "_map_on_ray", lambda fn, *rest: on_the_cluster.append(fn.__name__) or send(fn, *rest)
    )
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_tasks, args=(ray_cluster.dashboard, stop, seen), daemon=True)
    watcher.start()
    try:
        result = materialize_all(on_ray)
    finally:
        stop.set()
        watcher.join(timeout=30)
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert (metadata["engine"].value, metadata["processes"].value) == ("ray", 2)

    # Every per-row stage of silver went to the cluster: decode, validation, enrichment, scrub.
    assert set(on_the_cluster) == {"decode_fields", "failed_checks", "enrich_fields", "scrub_json_texts"}
    # Proof of distribution, from Ray itself: at one moment, a stage ran as two tasks on two nodes.
    stage_nodes = [{node for name, node in sample if "UDF" in name} for sample in seen]
    assert max(len(nodes) for nodes in stage_nodes) == 2, seen[:20]

    assert lake_rows(on_ray, EVENTS).equals(lake_rows(embedded, EVENTS))
    assert lake_rows(on_ray, REJECTED_EVENTS).equals(lake_rows(embedded, REJECTED_EVENTS))
    assert lake_rows(on_ray, REJECTED_EVENTS).height == 1500  # the events from the future
    gold = gold_rows(embedded)
    assert gold_rows(on_ray) == gold
    assert not [t for t in ("daily_active_users", "form_progress", "error_summary", "sessions") if not gold[t]]


def test_an_error_in_a_stage_on_ray_reaches_the_caller(ray_cluster: Any) -> None:
    changes = bronze(2)
    payload = changes["payload"].to_pylist()
    payload[-1] = "{not json"  # in the last partition, on whichever node runs it
    corrupted = changes.set_column(changes.schema.get_field_index("payload"), "payload", pa.array(payload))
    on_ray = Parallelism(min_rows=1, ray_address=ray_cluster.address)
    with RowPool(on_ray, corrupted.num_rows) as pool, pytest.raises(orjson.JSONDecodeError):
        transform.decode(corrupted, pool)
    assert pool.engine == "ray"
