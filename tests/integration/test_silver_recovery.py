"""A failed silver run advances nothing; the next run picks the same bronze versions up."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from pipelines import transform
from pipelines.assets import silver_events
from pipelines.resources import LakeResource
from tests.conftest import ApiServer, Env, materialize_all
from warehouse.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration


def test_failed_run_loses_nothing(api: ApiServer, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [{"uuid": f"r{i}", "timestamp": "2024-05-01T10:00:00Z", "user": f"u{i}"} for i in range(5)]
    assert api.post("/v1/events", json=batch).json()["accepted"] == 5

    def broken(*_: object, **__: object) -> None:
        raise OSError("object store unavailable")

    monkeypatch.setattr(transform, "build_silver", broken)
    failed = dg.materialize(
        [silver_events],
        resources={"lake": LakeResource(root=env.lake_root)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not failed.success
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == -1
    assert env.lake.version(EVENTS) in (None, 0)

    monkeypatch.undo()
    materialize_all(env)
    assert env.lake.watermark(EVENTS.name, RAW_EVENTS.name) == env.lake.version(RAW_EVENTS)
    assert sorted(pl.read_delta(env.lake.uri(EVENTS))["user_id"]) == [f"u{i}" for i in range(5)]
