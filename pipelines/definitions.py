"""The Dagster code location (``workspace.yaml`` loads ``pipelines.definitions``)."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import daily_active_users, monthly_active_users, raw_events, silver_events
from pipelines.jobs import ingest_to_gold
from pipelines.resources import LakeResource, WarehouseResource
from pipelines.sensors import bronze_sensor
from warehouse.settings import get_settings

_settings = get_settings()

defs = dg.Definitions(
    assets=[raw_events, silver_events, daily_active_users, monthly_active_users],
    jobs=[ingest_to_gold],
    sensors=[bronze_sensor],
    resources={
        "lake": LakeResource(root=_settings.lake_root),
        "warehouse": WarehouseResource(path=str(_settings.warehouse_file)),
    },
)
