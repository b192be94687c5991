"""The Dagster code location (``workspace.yaml`` loads ``pipelines.definitions``)."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import (
    GOLD_ASSETS,
    data_quality_daily,
    raw_events,
    retention_cohorts,
    serving_snapshot,
    silver_events,
    user_attributes,
)
from pipelines.jobs import ingest_to_gold, replay_quarantine, reprocess_silver
from pipelines.resources import LakeResource, WarehouseResource
from pipelines.sensors import bronze_sensor
from warehouse.settings import get_settings

_settings = get_settings()

defs = dg.Definitions(
    assets=[
        raw_events,
        silver_events,
        user_attributes,
        *GOLD_ASSETS,
        data_quality_daily,
        retention_cohorts,
        serving_snapshot,
    ],
    jobs=[ingest_to_gold, replay_quarantine, reprocess_silver],
    sensors=[bronze_sensor],
    resources={
        "lake": LakeResource(root=_settings.lake_root),
        "warehouse": WarehouseResource(path=str(_settings.warehouse_file), serving_path=str(_settings.serving_file)),
    },
)
