"""Jobs: new bronze to gold (what the hot path runs per micro-batch), quarantine replay, silver
reprocessing and the rescrub of stored rows after a scrub rules change.

All four run the same assets (silver step → gold marts → serving snapshot; the rescrub then purges
the old versions it left behind); the silver asset's
``mode`` config picks which rows it processes (:class:`pipelines.assets.SilverConfig`). Runs are
serialized by the instance's run queue (``max_concurrent_runs: 1``), so they never overlap.

They run in-process: every step of a run in the run's one process, one after the other. The gold
steps share one DuckDB writer and would wait for each other anyway, the silver step has its own
worker processes, and a process per step (Dagster's default multiprocess executor) paid a Python
and Dagster import for each of the ~20 steps, which dominated a run on new events (the event-to-gold
latency, bench/bench_freshness.py).
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import (
    GOLD_ASSETS,
    data_quality_daily,
    purged_history,
    raw_events,
    retention_cohorts,
    serving_snapshot,
    silver_events,
    user_attributes,
)

#: What the jobs materialize: silver (with quarantine), user attributes, gold and the serving snapshot.
DERIVED_ASSETS: list[dg.AssetsDefinition] = [
    silver_events,
    user_attributes,
    *GOLD_ASSETS,
    data_quality_daily,
    retention_cohorts,
    serving_snapshot,
]
#: Every asset of the code location: bronze (observed, not materialized), the derived ones and the
#: history purge that follows a rescrub.
PIPELINE_ASSETS: list[dg.AssetsDefinition | dg.AssetSpec] = [raw_events, *DERIVED_ASSETS, purged_history]

_SELECTION = dg.AssetSelection.assets(*DERIVED_ASSETS)


def _silver_config(**config: str) -> dict[str, object]:
    return {"ops": {silver_events.node_def.name: {"config": config}}}


ingest_to_gold = dg.define_asset_job(
    "ingest_to_gold",
    selection=_SELECTION,
    executor_def=dg.in_process_executor,
    config=_silver_config(mode="ingest"),
    description="Bronze versions after silver's watermark → silver/quarantine → gold marts → serving snapshot.",
)

replay_quarantine = dg.define_asset_job(
    "replay_quarantine",
    selection=_SELECTION,
    executor_def=dg.in_process_executor,
    config=_silver_config(mode="replay"),
    description="After a rule change: re-validate quarantined rows not replayed yet; those that now pass "
    "move to silver exactly once (recorded in quarantine/replays), then gold and serving follow.",
)

reprocess_silver = dg.define_asset_job(
    "reprocess_silver",
    selection=_SELECTION,
    executor_def=dg.in_process_executor,
    config=_silver_config(mode="reprocess", first_day="YYYY-MM-DD", last_day="YYYY-MM-DD"),
    description="Rebuild silver for an event_date range from bronze (set first_day/last_day in the "
    "launchpad), e.g. after a scrub rule was added; idempotent. Gold recomputes the affected days.",
)

rescrub_lake = dg.define_asset_job(
    "rescrub_lake",
    selection=dg.AssetSelection.assets(*DERIVED_ASSETS, purged_history),
    executor_def=dg.in_process_executor,
    config=_silver_config(mode="rescrub"),
    description="After the scrub rules changed (started by rescrub_sensor): apply them in place to silver and "
    "the quarantine, let gold and serving follow, then remove the old file versions and log entries.",
)
