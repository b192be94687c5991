"""The lake maintenance code location (``workspace.yaml``): the ``maintain_lake`` job and its
schedule, configured by settings read once here (:mod:`pipelines.defs.maintenance`)."""

import dagster as dg

from pipelines.defs import pipeline_resources
from pipelines.defs.maintenance import MaintenanceConfig, RunRetentionConfig, maintenance_job
from warehouse.settings import Settings


def build_maintenance_definitions(settings: Settings) -> dg.Definitions:
    """The maintenance job and its schedule (``maintenance_cron``, running by default)."""
    job = maintenance_job(
        MaintenanceConfig(
            retention_h=settings.maintenance_retention_h,
            log_retention_minutes=settings.log_retention_minutes,
            target_file_mb=settings.compact_target_mb,
            silver_open_days=settings.silver_open_days,
        ),
        RunRetentionConfig(run_retention_days=settings.run_retention_days),
    )
    schedule = dg.ScheduleDefinition(
        job=job,
        cron_schedule=settings.maintenance_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    resources = pipeline_resources(settings)
    return dg.Definitions(
        jobs=[job], schedules=[schedule], resources={"lake": resources["lake"], "warehouse": resources["warehouse"]}
    )


defs = build_maintenance_definitions(Settings())
