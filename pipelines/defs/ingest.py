"""Ingest-side Dagster objects: bronze ``raw_events`` (written by the ingest API, observed here) and
the bronze sensor that starts the hot path when silver is behind."""

import dagster as dg

from pipelines.defs.resources import LakeResource
from warehouse.lake.tables import EVENTS, RAW_EVENTS

#: The hot path job (pipelines.defs.hot_path) and the per-micro-batch job (pipelines.defs.jobs).
HOT_PATH_JOB = "hot_path"
INGEST_TO_GOLD = "ingest_to_gold"
#: Tag of a micro-batch run: the bronze version it was started for.
BRONZE_VERSION_TAG = "eventlake/bronze_version"

raw_events = dg.AssetSpec(
    RAW_EVENTS.name,
    group_name="bronze",
    kinds={"deltalake"},
    description="Bronze: every event the ingest API acknowledged, as received (Delta, by received_date). "
    "Written by the API's group commit; observed by the bronze sensor (metadata: Delta version).",
)

#: Run states in which a run is still to finish.
ACTIVE_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


#: Runs that carry new bronze to gold: while one is queued or running, it (or the hot path's next
#: micro-batch) picks up what arrived.
_CARRIERS = (HOT_PATH_JOB, INGEST_TO_GOLD)


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
    in_flight = (dg.RunsFilter(job_name=job, statuses=ACTIVE_RUNS) for job in _CARRIERS)
    if any(context.instance.get_run_records(runs, limit=1) for runs in in_flight):
        return dg.SensorResult(
            skip_reason="a run is in flight; it or the next one picks this up",
            asset_events=observations,
            cursor=str(version),
        )
    return dg.SensorResult(
        # The key names the versions left, (watermark, version]: Dagster drops a request whose key it
        # has seen, and a hot path that stopped with a backlog left (its lifetime limit) must be followed.
        run_requests=[
            dg.RunRequest(run_key=f"raw_events@v{watermark + 1}-v{version}", tags={BRONZE_VERSION_TAG: str(version)})
        ],
        asset_events=observations,
        cursor=str(version),
    )


def bronze_sensor_definition(interval_s: int) -> dg.SensorDefinition:
    """:func:`bronze_sensor` ticking every ``interval_s`` seconds (``EVENTLAKE_SENSOR_INTERVAL_S``)."""
    return dg.sensor(
        name="bronze_sensor",
        job_name=HOT_PATH_JOB,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts the hot_path run when bronze has versions silver has not processed; "
        "skips while a hot path or ingest_to_gold run is in flight (it picks the new versions up).",
    )(bronze_sensor)
