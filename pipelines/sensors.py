"""The bronze sensor: observe new bronze versions and start one run at a time."""

import dagster as dg

from pipelines.jobs import ingest_to_gold
from pipelines.resources import LakeResource
from warehouse.settings import get_settings
from warehouse.tables import EVENTS, RAW_EVENTS

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=ingest_to_gold,
    minimum_interval_seconds=get_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts ingest_to_gold when bronze has versions silver has not processed; "
    "skips while a run is in flight, so runs (and DuckDB writers) never overlap.",
)
def bronze_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult | dg.SkipReason:
    """Observe ``raw_events``'s Delta version and request a run when silver is behind."""
    store = lake.lake()
    version = store.version(RAW_EVENTS)
    if version is None:
        return dg.SkipReason("bronze raw_events does not exist yet")
    observation = dg.AssetObservation(asset_key=RAW_EVENTS.name, metadata={"delta_version": version})
    observations = [observation] if context.cursor != str(version) else []
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    if version <= watermark:
        return dg.SensorResult(
            skip_reason=f"silver is up to date with bronze v{version}", asset_events=observations, cursor=str(version)
        )
    if context.instance.get_run_records(dg.RunsFilter(job_name=ingest_to_gold.name, statuses=_ACTIVE), limit=1):
        return dg.SensorResult(
            skip_reason="a run is in flight; it or the next one picks this up",
            asset_events=observations,
            cursor=str(version),
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"raw_events@{version}", tags={"eventlake/bronze_version": str(version)})],
        asset_events=observations,
        cursor=str(version),
    )
