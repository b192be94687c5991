"""The Dagster code location (``workspace.yaml`` loads ``pipelines.definitions``)."""

from __future__ import annotations

import dagster as dg

from pipelines.hot_path import hot_path
from pipelines.jobs import PIPELINE_ASSETS, ingest_to_gold, replay_quarantine, reprocess_silver, rescrub_lake
from pipelines.resources import LakeResource, WarehouseResource
from pipelines.sensors import bronze_sensor, rescrub_sensor
from warehouse.settings import get_settings

_settings = get_settings()

defs = dg.Definitions(
    assets=PIPELINE_ASSETS,
    jobs=[hot_path, ingest_to_gold, replay_quarantine, reprocess_silver, rescrub_lake],
    sensors=[bronze_sensor, rescrub_sensor],
    resources={
        "lake": LakeResource(root=_settings.lake_root),
        "warehouse": WarehouseResource(path=str(_settings.warehouse_file), serving_path=str(_settings.serving_file)),
    },
)
