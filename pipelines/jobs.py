"""Jobs: the one job that carries new bronze data all the way to gold."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import GOLD_ASSETS, data_quality_daily, serving_snapshot, silver_events

ingest_to_gold = dg.define_asset_job(
    "ingest_to_gold",
    selection=dg.AssetSelection.assets(silver_events, *GOLD_ASSETS, data_quality_daily, serving_snapshot),
    description="Bronze versions after silver's watermark → silver/quarantine → gold marts → serving snapshot.",
)
