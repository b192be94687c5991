"""Sensors: new bronze versions start the hot path; a scrub rules change starts the rescrub."""

import dagster as dg

from pipelines.hot_path import BRONZE_VERSION_TAG, hot_path
from pipelines.jobs import ingest_to_gold, rescrub_lake
from pipelines.rescrub import pending_tables
from pipelines.resources import LakeResource
from pipelines.scrubbing import DEFAULT_RULES_PATH, rules_fingerprint
from warehouse.settings import get_settings
from warehouse.tables import EVENTS, RAW_EVENTS

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


#: Runs that carry new bronze to gold: while one is queued or running, it (or the hot path's next
#: micro-batch) picks up what arrived.
_CARRIERS = (hot_path.name, ingest_to_gold.name)


@dg.sensor(
    job=hot_path,
    minimum_interval_seconds=get_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the hot_path run when bronze has versions silver has not processed; "
    "skips while a hot path or ingest_to_gold run is in flight (it picks the new versions up).",
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
    in_flight = (dg.RunsFilter(job_name=job, statuses=_ACTIVE) for job in _CARRIERS)
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


@dg.sensor(
    job=rescrub_lake,
    # A rules change is rare and its rescrub long: no need to read two tables' metadata every 2 s.
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts rescrub_lake when silver or the quarantine was scrubbed with other scrub rules than "
    "the current ones (their eventlake.scrubRules property), e.g. a lake from before the ip_address rule.",
)
def rescrub_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.RunRequest | dg.SkipReason:
    """Request one rescrub per rules fingerprint and silver version while a table lags the rules.

    The rules file is read on every tick, so editing it in place needs no restart. The key names
    silver's version too: a rescrub that failed is requested again once silver moved.
    """
    settings = get_settings()
    fingerprint = rules_fingerprint(settings.scrub_rules_path or DEFAULT_RULES_PATH)
    store = lake.lake()
    pending = pending_tables(store, fingerprint)
    if not pending:
        return dg.SkipReason(f"silver and the quarantine are scrubbed with rules {fingerprint}")
    if context.instance.get_run_records(dg.RunsFilter(job_name=rescrub_lake.name, statuses=_ACTIVE), limit=1):
        return dg.SkipReason("a rescrub_lake run is in flight")
    names = ", ".join(table.name for table in pending)
    context.log.info("%s not scrubbed with rules %s: requesting rescrub_lake", names, fingerprint)
    return dg.RunRequest(run_key=f"rescrub@{fingerprint}@silver-v{store.version(EVENTS)}")
