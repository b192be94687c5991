"""The lake maintenance job and its schedule, in a code location of their own
(``pipelines/definitions_maintenance.py``): the instance's run queue allows one run per code
location (``scripts/stack_dagster.py``), so maintenance runs beside the hot path, never beside
another run of its own, and neither waits for the other. It touches only the lake's Delta tables
(delta-rs's optimistic concurrency: its commits add no data and conflict with no append) and reads
the serving snapshot, never the DuckDB warehouse the hot path writes (docs/lifecycle.md).
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.defs.resources import LakeResource, WarehouseResource
from pipelines.maintenance import MaintenancePolicy, TableReport, maintain_lake

MAINTAIN_LAKE = "maintain_lake"


class MaintenanceConfig(dg.Config):
    """The maintenance policy (the job's defaults come from ``EVENTLAKE_MAINTENANCE_*`` settings)."""

    retention_h: float = Field(ge=0, description="Keep removed data files at least this long (h).")
    log_retention_minutes: float = Field(ge=0, description="Keep log entries no consumer needs this long (min).")
    target_file_mb: int = Field(ge=1, description="Size of the files compaction writes (MB).")
    silver_open_days: int = Field(ge=0, description="Silver partitions younger than this many days stay open.")


def _metadata(report: TableReport) -> dict[str, int]:
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
    summary = {report.table: _metadata(report) for report in reports}
    return dg.Output(len(reports), metadata={"tables": dg.MetadataValue.json(summary)})


def maintenance_job(config: MaintenanceConfig) -> dg.JobDefinition:
    """``maintain_lake``: :func:`maintain_tables`, with ``config`` as the launchpad's defaults."""

    @dg.job(
        name=MAINTAIN_LAKE,
        executor_def=dg.in_process_executor,
        config={"ops": {"maintain_tables": {"config": config.model_dump()}}},
        description="Lake maintenance: compaction, checkpoints, log expiry and vacuum, bounded by consumers.",
    )
    def maintain_lake_job() -> None:
        maintain_tables()

    return maintain_lake_job
