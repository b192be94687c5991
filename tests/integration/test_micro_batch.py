"""What one micro-batch's gold step shares and skips, against a real lake and DuckDB files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from pipelines.gold import MicroBatch, refresh
from tests.conftest import Env, materialize_all
from warehouse import gold
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.history import ChangeFeed
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.marts import catalog

pytestmark = pytest.mark.integration

#: Marts whose mart.yaml names the only event types they read.
TYPED = {"daily_page_views", "error_summary", "form_progress"}


def append_bronze(env: Env, prefix: str, events: dict[str, Any], n: int = 3) -> int:
    ctx = RequestContext(received_at=datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [
        row
        for i in range(n)
        for row in explode_payload(
            {
                "uuid": f"{prefix}{i}",
                "timestamp": "2024-03-04T10:00:00Z",
                "user": f"u{i}",
                "page": f"https://shop.example.com/p/{i}",
                "events": events,
            },
            ctx,
        )
    ]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def gold_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Materialization metadata of each mart the gold step materialized, values unwrapped."""
    return {
        materialization.asset_key.to_user_string(): {k: v.value for k, v in materialization.metadata.items()}
        for materialization in result.asset_materializations_for_node("gold_marts")
    }


def rows_of(path: Path, marts: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    con = gold.connect(path, read_only=True)
    try:
        return {
            mart: con.execute(f"select * exclude (silver_version) from {mart} order by all").fetchall()  # noqa: S608
            for mart in sorted(marts)
        }
    finally:
        con.close()


def test_a_micro_batch_without_a_marts_event_types_skips_it_and_gold_equals_a_rebuild(env: Env, tmp_path: Path) -> None:
    append_bronze(env, "first", {"page_view": {}, "errors": {"message": "boom", "stackTrace": "Error: boom"}})
    first = gold_metadata(materialize_all(env))
    assert not any(first[mart]["skipped"] for mart in TYPED - {"form_progress"})

    append_bronze(env, "clicks", {"click": {"component": "buy"}})
    result = materialize_all(env)
    clicks = gold_metadata(result)
    # Skipped: no new row of their types; watermark moved, nothing validated.
    assert {mart for mart, meta in clicks.items() if meta["skipped"]} >= TYPED
    assert not clicks["daily_event_counts"]["skipped"] and clicks["daily_event_counts"]["rewritten_rows"] > 0
    assert all(meta["refresh_s"] >= 0 for meta in clicks.values())
    checked = {check.asset_key.to_user_string() for check in result.get_asset_check_evaluations()}
    assert checked.isdisjoint(TYPED) and "daily_event_counts" in checked
    # The marts' checks run after the snapshot is published, on the rows this refresh rewrote.
    order = [(event.event_type_value, event.step_key) for event in result.all_events]
    published = order.index(("ASSET_MATERIALIZATION", "serving_snapshot"))
    gold_checks = [i for i, event in enumerate(order) if event == ("ASSET_CHECK_EVALUATION", "gold_checks")]
    assert len(gold_checks) == len(checked - {"events", "user_attributes"}) and min(gold_checks) > published
    counts = next(c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("daily_event_counts"))
    validated = {r["element_count"] for r in counts.metadata["results"].value.values()}  # type: ignore[union-attr]

    con = gold.connect(env.warehouse, read_only=True)
    silver_version = env.lake.version(EVENTS)
    rewritten = con.execute("select count(*) from daily_event_counts where silver_version = ?", [silver_version])
    assert validated == {rewritten.fetchone()[0]}  # type: ignore[index]
    watermarks = dict(con.execute("select mart, silver_version from gold_watermarks").fetchall())
    con.close()
    assert all(watermarks[mart] == silver_version for mart in catalog())

    # The skipped marts hold what a warehouse built from scratch on the same silver holds.
    rebuilt = tmp_path / "rebuilt.duckdb"
    con = gold.connect(rebuilt)
    batch = MicroBatch(env.lake)
    for mart in (m for m in catalog().values() if m.spec.kind == "incremental"):
        refresh(con, batch, mart)
    con.close()
    assert rows_of(env.warehouse, TYPED) == rows_of(rebuilt, TYPED)

    append_bronze(env, "views", {"page_view": {}}, n=1)
    views = gold_metadata(materialize_all(env))
    assert not views["daily_page_views"]["skipped"] and views["error_summary"]["skipped"]


def test_a_shared_change_feed_reads_a_micro_batch_once_and_streams_a_first_build(env: Env) -> None:
    first = append_bronze(env, "a", {"page_view": {}, "click": {}})
    materialize_all(env)
    before = env.lake.version(EVENTS)
    append_bronze(env, "b", {"alias": {"previousId": "anon-1"}, "click": {}})
    materialize_all(env)
    after = env.lake.version(EVENTS)
    assert first >= 0 and after > before

    small = ChangeFeed(env.lake, EVENTS, before, after)
    inserts = small.read(["event_id", "event_type"]).read_all()
    assert small._cached() is not None  # kept in memory: later reads do not touch storage
    aliases = small.read(["event_type"], equals=("event_type", "alias")).read_all()
    assert inserts.num_rows == 6 and aliases["event_type"].to_pylist() == ["alias"] * 3
    assert inserts.column_names == ["event_id", "event_type", "_commit_version"]

    whole = ChangeFeed(env.lake, EVENTS, -1, after)
    assert whole.read(["event_id"]).read_all().num_rows == 12
    assert whole._cached() is None  # a first build's history is streamed, never held
    tiny = ChangeFeed(env.lake, EVENTS, before, after, max_rows=2)
    assert tiny._cached() is None and tiny.read(["event_id"]).read_all().num_rows == 6
    with pytest.raises(ValueError, match="not a literal"):
        small.read(["event_type"], equals=("event_type", "x' or 1=1 --"))
