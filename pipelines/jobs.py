"""Jobs: the one job that carries new bronze data all the way to gold."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import daily_active_users, monthly_active_users, silver_events

ingest_to_gold = dg.define_asset_job(
    "ingest_to_gold",
    selection=dg.AssetSelection.assets(silver_events, daily_active_users, monthly_active_users),
    description="Bronze versions after silver's watermark → silver/quarantine → gold marts.",
)
