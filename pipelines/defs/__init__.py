"""The Dagster definitions, by domain: ``ingest`` (bronze and its sensor, :mod:`.ingest`), ``silver``,
``gold`` (one asset per mart folder, and serving), ``lifecycle`` (rescrub and purge), the jobs and the
hot path, with their resources. :func:`build_definitions` assembles them from one settings object,
read once at the code location's start (``pipelines/definitions.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from pipelines.defs.gold import gold_asset, gold_checks, serving_asset
from pipelines.defs.hot_path import HotPathConfig, hot_path_job
from pipelines.defs.ingest import bronze_sensor_definition, raw_events
from pipelines.defs.jobs import pipeline_jobs
from pipelines.defs.lifecycle import erase_person_job, purged_history, rescrub_sensor, tier_job
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from pipelines.defs.silver import silver_events_asset, user_attributes_asset
from warehouse.marts import catalog
from warehouse.settings import Settings


@dataclass(frozen=True)
class PipelineAssets:
    """The assets of the code location: ``derived`` (what the jobs materialize: silver, user attributes,
    every mart, serving), the marts' ``checks`` (run by the jobs after serving), bronze (observed)
    and the purge that follows a rescrub."""

    derived: list[dg.AssetsDefinition]
    checks: dg.AssetChecksDefinition
    purge: dg.AssetsDefinition = purged_history

    @property
    def all(self) -> list[dg.AssetsDefinition | dg.AssetSpec]:
        """Every asset and check, bronze and the purge included."""
        return [raw_events, *self.derived, self.checks, self.purge]


def pipeline_assets(settings: Settings) -> PipelineAssets:
    """The assets these settings describe: freshness policies from ``freshness_warn_s``/``_fail_s``
    (warn, then fail, when not updated for that long; evaluated by the daemon, shown in the UI) and
    one asset per mart folder (the shipped ones and ``extra_marts_dir``'s), all from the
    ``gold_marts`` step."""
    freshness = dg.FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=settings.freshness_fail_s),
        warn_window=timedelta(seconds=settings.freshness_warn_s),
    )
    marts = catalog(settings.extra_marts_dir)
    return PipelineAssets(
        [
            silver_events_asset(freshness),
            user_attributes_asset(freshness),
            gold_asset(marts, freshness),
            serving_asset(marts, freshness),
        ],
        gold_checks(marts),
    )


def pipeline_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources these settings describe. The pseudonym key and the object store's secret key,
    when set in the environment, are passed as ``dg.EnvVar`` so the UI shows their names, not their values."""
    key = dg.EnvVar("EVENTLAKE_PSEUDONYM_KEY") if os.environ.get("EVENTLAKE_PSEUDONYM_KEY") else None
    secret: str | dg.EnvVar | None = None  # the object store's secret key
    if os.environ.get("EVENTLAKE_S3_SECRET_ACCESS_KEY"):
        secret = dg.EnvVar("EVENTLAKE_S3_SECRET_ACCESS_KEY")
    elif settings.s3_secret_access_key:  # from a .env file: passed as its value
        secret = settings.s3_secret_access_key.get_secret_value()
    return {
        "lake": LakeResource(
            root=settings.lake_root,
            cold_root=settings.cold_root,
            cold_compression_level=settings.cold_compression_level,
            cold_target_mb=settings.cold_target_mb,
            auto_compact_files=settings.auto_compact_files,
            auto_compact_mb=settings.auto_compact_mb,
            s3_endpoint=settings.s3_endpoint,
            s3_access_key_id=settings.s3_access_key_id,
            s3_secret_access_key=secret,
            s3_region=settings.s3_region,
            s3_allow_http=settings.s3_allow_http,
        ),
        "warehouse": WarehouseResource.from_settings(settings),
        "silver_step": SilverResource.from_settings(settings, pseudonym_key=key),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every Dagster object of eventlake, configured by ``settings``.

    Raises:
        warehouse.marts.MartError: a mart folder is malformed.
    """
    assets = pipeline_assets(settings)
    jobs = pipeline_jobs(assets.derived, assets.purge)
    hot_path_config = HotPathConfig(
        poll_interval_s=settings.hot_path_poll_s,
        idle_exit_s=settings.hot_path_idle_s,
        max_lifetime_s=settings.hot_path_max_s,
        log_retention_minutes=settings.log_retention_minutes,
    )
    tiering, tiering_schedule = tier_job(settings)
    return dg.Definitions(
        assets=assets.all,
        jobs=[hot_path_job(assets.all, jobs[0], hot_path_config), *jobs, tiering, erase_person_job],
        schedules=[tiering_schedule],
        sensors=[bronze_sensor_definition(settings.sensor_interval_s, settings.hot_path_idle_s == 0), rescrub_sensor],
        resources=pipeline_resources(settings),
    )
