"""A failed silver run advances nothing; the next run picks the same bronze versions up. A backlog
is taken in bounded micro-batches."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import polars as pl
import pytest

from pipelines import transform
from pipelines.defs import pipeline_assets
from tests.conftest import ApiServer, Env, materialize_all
from warehouse.lake.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration


def test_failed_run_loses_nothing(api: ApiServer, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [{"uuid": f"r{i}", "timestamp": "2024-05-01T10:00:00Z", "user": f"u{i}"} for i in range(5)]
    assert api.post("/v1/events", json=batch).json()["accepted"] == 5

    def broken(*_: object, **__: object) -> None:
        raise OSError("object store unavailable")

    monkeypatch.setattr(transform, "build_silver", broken)
    failed = dg.materialize(
        pipeline_assets(env.settings()).derived[:1],
        resources=env.resources(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not failed.success
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == -1
    assert env.lake.dataset(EVENTS).count_rows() == 0  # created (with its properties), no row written

    monkeypatch.undo()
    materialize_all(env)
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == env.lake.version(RAW_EVENTS)
    assert sorted(pl.read_delta(env.lake.uri(EVENTS))["user_id"]) == [f"u{i}" for i in range(5)]


def test_a_bronze_backlog_is_worked_off_in_bounded_micro_batches(
    api: ApiServer, env: Env, setting: Callable[[str, str], None]
) -> None:
    """Regression: one silver run took the whole bronze backlog, so a backlog of millions of events
    (the pipeline down for an hour at 1,000 events/s) needed more memory than any run had, every run."""
    sizes = [2, 3, 8, 1]  # one bronze commit each: the posts wait for their commit one after another
    versions = []
    for n, size in enumerate(sizes):
        batch = [{"uuid": f"b{n}-{i}", "timestamp": "2024-05-01T10:00:00Z", "user": f"u{n}"} for i in range(size)]
        assert api.post("/v1/events", json=batch).json()["accepted"] == size
        versions.append(env.lake.version(RAW_EVENTS))
    assert len(set(versions)) == len(sizes)

    setting("EVENTLAKE_SILVER_MAX_BATCH_ROWS", "6")
    # 2+3 fit in 6 rows and 2+3+8 do not; the 8-row commit alone is over the bound but is taken whole.
    for until, rows in [(versions[1], 5), (versions[2], 8), (versions[3], 1)]:
        result = dg.materialize(
            pipeline_assets(env.settings()).derived[:1],
            resources=env.resources(),
            instance=dg.DagsterInstance.ephemeral(),
        )
        metadata = result.asset_materializations_for_node("silver_events")[0].metadata
        assert (metadata["bronze_to_version"].value, metadata["bronze_rows"].value) == (until, rows)
        assert metadata["bronze_latest_version"].value == versions[-1]
        assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == until
    ids = pl.read_delta(env.lake.uri(EVENTS))["event_id"].to_list()
    assert len(ids) == sum(sizes) == len(set(ids))
