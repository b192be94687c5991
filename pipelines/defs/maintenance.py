"""The lake maintenance job and its schedule, in a code location of their own
(``pipelines/definitions_maintenance.py``): the instance's run queue allows one run per code
location (``scripts/stack_dagster.py``), so maintenance runs beside the hot path, never beside
another run of its own, and neither waits for the other. It touches only the lake's Delta tables
(delta-rs's optimistic concurrency: its commits add no data and conflict with no append) and reads
the serving snapshot, never the DuckDB warehouse the hot path writes (docs/lifecycle.md).
"""

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from pydantic import Field

from pipelines.defs.resources import LakeResource, WarehouseResource
from pipelines.maintenance import MaintenancePolicy, TableReport, maintain_lake

MAINTAIN_LAKE = "maintain_lake"
#: Runs deleted per maintenance run at most, oldest first (a backlog is worked off over runs).
PRUNE_BATCH = 5000
#: Run statuses that are final: a run in any other state is never deleted.
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]

log = logging.getLogger(__name__)


class MaintenanceConfig(dg.Config):
    """The maintenance policy (the job's defaults come from ``EVENTLAKE_MAINTENANCE_*`` settings)."""

    retention_h: float = Field(
        ge=0.05,
        description="Vacuum files no version from the floor on reads once written this long before it (h); at "
        "least 3 min, longer than an append takes from writing its files to its commit.",
    )
    log_retention_minutes: float = Field(ge=0, description="Keep log entries no consumer needs this long (min).")
    target_file_mb: int = Field(ge=1, description="Size of the files compaction writes (MB).")
    silver_open_days: int = Field(ge=0, description="Silver partitions younger than this many days stay open.")


class RunRetentionConfig(dg.Config):
    """How long Dagster keeps finished runs (the job's default comes from ``EVENTLAKE_RUN_RETENTION_DAYS``)."""

    run_retention_days: float = Field(gt=0, description="Delete finished runs created more than this long ago (days).")


def prune_runs(instance: dg.DagsterInstance, created_before: datetime, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` finished runs created before ``created_before`` (UTC), oldest first,
    with everything the instance keeps for them: the run, its event log (and, with the default
    SQLite storage, the run's own event-log database file) and its captured compute logs. Returns
    how many runs were deleted. The hot path records a run per micro-batch, ~17,000 a day.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, created_before=created_before), limit=limit, ascending=True
    )
    events = instance.event_log_storage
    for record in records:
        run_id = record.dagster_run.run_id
        instance.delete_run(run_id)
        instance.compute_log_manager.delete_logs(prefix=[run_id])
        shard = getattr(events, "path_for_shard", None)  # SqliteEventLogStorage: one database per run
        if shard is not None:
            for path in (shard(run_id), f"{shard(run_id)}-wal", f"{shard(run_id)}-shm"):
                if os.path.exists(path):
                    os.remove(path)
    if records:
        log.info("deleted %d finished runs created before %s", len(records), created_before.isoformat())
    return len(records)


def prune_check_executions(instance: dg.DagsterInstance, chunk: int = 500) -> int:
    """Delete the asset check executions of runs that no longer exist; returns how many.

    Dagster's ``delete_run`` removes a run's event log but not the rows its asset checks left in the
    event log storage's ``asset_check_executions`` table (its internal schema, read through the
    storage's own connection; Dagster 1.13 has no public call for it): ~2.7 KB each and ~20 per
    micro-batch, ~0.9 GB a day of hot path, found by the soak (the Dagster folder grew 115 -> 152 MB
    in 50 minutes with runs deleted after 10). A storage that is not SQL-backed keeps its own.
    """
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return 0
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        recorded = {run_id for (run_id,) in conn.execute(db.select(table.c.run_id).distinct())}
    gone = sorted(recorded - set(instance.get_run_ids()))
    deleted = 0
    with storage.index_transaction() as conn:
        for start in range(0, len(gone), chunk):
            deleted += conn.execute(table.delete().where(table.c.run_id.in_(gone[start : start + chunk]))).rowcount
    if deleted:
        log.info("deleted %d asset check executions of %d deleted runs", deleted, len(gone))
    return deleted


@dg.op(description="Delete finished Dagster runs older than the run retention, with their event and compute logs.")
def prune_dagster_runs(context: dg.OpExecutionContext, config: RunRetentionConfig) -> dg.Output[int]:
    """Output: how many runs were deleted (at most :data:`PRUNE_BATCH` per run); the asset check
    executions of deleted runs go too (:func:`prune_check_executions`)."""
    before = datetime.now(UTC) - timedelta(days=config.run_retention_days)
    deleted = prune_runs(context.instance, before)
    checks = prune_check_executions(context.instance)
    return dg.Output(
        deleted,
        metadata={"deleted_runs": deleted, "deleted_check_executions": checks, "created_before": before.isoformat()},
    )


def _metadata(report: TableReport) -> dict[str, int]:
    """The report as metadata; a cold tier's keys start with ``cold_`` (they go to the same asset)."""
    prefix = "cold_" if report.tier == "cold" else ""
    return {f"{prefix}{key}": value for key, value in _counts(report).items()}


def _counts(report: TableReport) -> dict[str, int]:
    return {
        "files_before": report.before.files,
        "files_after": report.after.files,
        "bytes_before": report.before.bytes,
        "bytes_after": report.after.bytes,
        "version_before": report.before.version,
        "version_after": report.after.version,
        "compacted_partitions": len(report.compacted),
        "vacuumed_files": report.vacuumed,
        "expired_log_files": report.expired_logs,
        "consumer_floor_version": report.floor,
    }


@dg.op(
    description="Compact closed partitions, checkpoint, expire old log entries and vacuum every lake table, "
    "never past what a consumer still reads."
)
def maintain_tables(
    context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource, warehouse: WarehouseResource
) -> dg.Output[int]:
    """Maintain every lake table; one observation per table with its files, bytes and versions
    before and after. Output: how many tables were maintained.

    Raises:
        deltalake.exceptions.DeltaError: a step failed after retries; the next run goes on.
    """
    policy = MaintenancePolicy(
        retention=timedelta(hours=config.retention_h),
        log_retention=timedelta(minutes=config.log_retention_minutes),
        target_file_bytes=config.target_file_mb * 1024 * 1024,
        open_days=config.silver_open_days,
    )
    reports = maintain_lake(lake.lake(), Path(warehouse.serving_path), policy)
    for report in reports:
        context.log_event(dg.AssetObservation(asset_key=report.table, metadata=_metadata(report)))
    summary = {f"{report.table} ({report.tier})": _counts(report) for report in reports}
    return dg.Output(len(reports), metadata={"tables": dg.MetadataValue.json(summary)})


def maintenance_job(config: MaintenanceConfig, runs: RunRetentionConfig) -> dg.JobDefinition:
    """``maintain_lake``: :func:`maintain_tables` and :func:`prune_dagster_runs`, with ``config`` and
    ``runs`` as the launchpad's defaults."""

    @dg.job(
        name=MAINTAIN_LAKE,
        executor_def=dg.in_process_executor,
        config={
            "ops": {
                "maintain_tables": {"config": config.model_dump()},
                "prune_dagster_runs": {"config": runs.model_dump()},
            }
        },
        description="Lake maintenance: compaction, checkpoints, log expiry and vacuum, bounded by consumers; "
        "Dagster's finished runs past their retention deleted.",
    )
    def maintain_lake_job() -> None:
        maintain_tables()
        prune_dagster_runs()

    return maintain_lake_job
