"""Jobs: new bronze to gold (what the hot path runs per micro-batch), quarantine replay, silver
reprocessing and the rescrub of stored rows after a scrub rules change.

All four run the same assets (silver step → gold marts → serving snapshot; the rescrub then purges
the old versions it left behind); the silver asset's
``mode`` config picks which rows it processes (:class:`pipelines.defs.silver.SilverConfig`). Runs are
serialized by the instance's run queue (``max_concurrent_runs: 1``), so they never overlap.

They run in-process: every step of a run in the run's one process, one after the other. The gold
steps share one DuckDB writer and would wait for each other anyway, the silver step has its own
worker processes, and a process per step (Dagster's default multiprocess executor) paid a Python
and Dagster import for each of the ~20 steps, which dominated a run on new events (the event-to-gold
latency, bench/bench_freshness.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def _silver_config(**config: str) -> dict[str, object]:
    return {"ops": {"silver_events": {"config": config}}}


def pipeline_jobs(
    derived: Sequence[dg.AssetsDefinition], purge: dg.AssetsDefinition
) -> list[UnresolvedAssetJobDefinition]:
    """The four jobs over the ``derived`` assets (silver, user attributes, gold, serving); the rescrub
    also runs ``purge`` (``purged_history``). ``ingest_to_gold`` first: the hot path runs it."""
    selection = dg.AssetSelection.assets(*derived)

    ingest_to_gold = dg.define_asset_job(
        "ingest_to_gold",
        selection=selection,
        executor_def=dg.in_process_executor,
        config=_silver_config(mode="ingest"),
        description="Bronze versions after silver's watermark → silver/quarantine → gold marts → serving snapshot.",
    )

    replay_quarantine = dg.define_asset_job(
        "replay_quarantine",
        selection=selection,
        executor_def=dg.in_process_executor,
        config=_silver_config(mode="replay"),
        description="After a rule change: re-validate quarantined rows not replayed yet; those that now pass "
        "move to silver exactly once (recorded in quarantine/replays), then gold and serving follow.",
    )

    reprocess_silver = dg.define_asset_job(
        "reprocess_silver",
        selection=selection,
        executor_def=dg.in_process_executor,
        config=_silver_config(mode="reprocess", first_day="YYYY-MM-DD", last_day="YYYY-MM-DD"),
        description="Rebuild silver for an event_date range from bronze (set first_day/last_day in the "
        "launchpad), e.g. after a scrub rule was added; idempotent. Gold recomputes the affected days.",
    )

    rescrub_lake = dg.define_asset_job(
        "rescrub_lake",
        selection=selection | dg.AssetSelection.assets(purge),
        executor_def=dg.in_process_executor,
        config=_silver_config(mode="rescrub"),
        description="After the scrub rules changed or a release added derived columns (started by rescrub_sensor): "
        "apply the rules in place to silver and the quarantine and fill the new columns in from silver itself, let "
        "gold and serving follow, then remove the old file versions and log entries.",
    )
    return [ingest_to_gold, replay_quarantine, reprocess_silver, rescrub_lake]
