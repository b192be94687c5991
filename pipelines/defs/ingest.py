"""Ingest-side Dagster objects: bronze ``raw_events`` (written by the ingest API, observed here) and
the bronze sensor that keeps the hot path running, and restarts it after a crash."""

import logging
import sqlite3
import time

import dagster as dg

from pipelines.defs.resources import LakeResource
from warehouse.lake.tables import EVENTS, RAW_EVENTS

log = logging.getLogger(__name__)

#: The hot path job (pipelines.defs.hot_path) and the per-micro-batch job (pipelines.defs.jobs).
HOT_PATH_JOB = "hot_path"
INGEST_TO_GOLD = "ingest_to_gold"
#: Tag of a micro-batch run: the bronze version it was started for.
BRONZE_VERSION_TAG = "eventlake/bronze_version"
#: Tag of a hot path run: the bronze versions silver had left when it was requested (``v<from>-v<to>``).
BRONZE_RANGE_TAG = "eventlake/bronze_range"
#: Tag of a micro-batch run: the id of the hot path run that executed it.
HOT_PATH_TAG = "eventlake/hot_path"
#: Tag of a hot path run: when it last showed it is alive (Unix time, s), every HEARTBEAT_INTERVAL_S.
HEARTBEAT_TAG = "eventlake/heartbeat"
HEARTBEAT_INTERVAL_S = 2.0
#: Tag of a hot path run: micro-batches it has completed (stamped with the heartbeat).
MICRO_BATCHES_TAG = "eventlake/micro_batches"
#: A hot path run without a heartbeat for this long is taken for dead (its process was killed) and
#: marked failed, with the micro-batch it was running.
HEARTBEAT_TIMEOUT_S = 15.0
#: After n hot path runs failed in a row, the next waits RETRY_BASE_S * 2 ** (n - 1) s after the
#: last one ended, at most RETRY_MAX_S.
RETRY_BASE_S = 2.0
RETRY_MAX_S = 300.0

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


def _dead(record: dg.RunRecord, now: float) -> bool:
    """A started hot path run that stopped stamping its heartbeat (or never did) for HEARTBEAT_TIMEOUT_S."""
    run = record.dagster_run
    if run.job_name != HOT_PATH_JOB or run.status != dg.DagsterRunStatus.STARTED:
        return False
    beat = run.tags.get(HEARTBEAT_TAG)
    last = float(beat) if beat else (record.start_time or record.create_timestamp.timestamp())
    return now - last > HEARTBEAT_TIMEOUT_S


def _orphaned(instance: dg.DagsterInstance, record: dg.RunRecord, dead: set[str]) -> bool:
    """A micro-batch run in progress whose hot path run is dead or over (it ran in that process)."""
    parent_id = record.dagster_run.tags.get(HOT_PATH_TAG)
    if record.dagster_run.job_name != INGEST_TO_GOLD or not parent_id:
        return False
    if parent_id in dead:
        return True
    parent = instance.get_run_by_id(parent_id)
    return parent is None or parent.is_finished


def _fail_dead_runs(instance: dg.DagsterInstance, in_flight: list[dg.RunRecord]) -> list[dg.RunRecord]:
    """Mark failed the hot path runs whose process died and the micro-batches they were running;
    the runs still alive."""
    now = time.time()
    dead = {record.dagster_run.run_id for record in in_flight if _dead(record, now)}
    alive = []
    for record in in_flight:
        run = record.dagster_run
        try:
            if run.run_id in dead:
                instance.report_run_failed(
                    run, f"no heartbeat for {HEARTBEAT_TIMEOUT_S:.0f} s: its process is gone; the sensor starts another"
                )
            elif _orphaned(instance, record, dead):
                instance.report_run_failed(run, f"its hot path run {run.tags[HOT_PATH_TAG]} is gone")
            else:
                alive.append(record)
        except sqlite3.OperationalError:  # the instance's database locked (a hung writer): next tick
            log.warning("could not mark run %s failed; retrying at the next tick", run.run_id, exc_info=True)
            alive.append(record)
    return alive


def _backoff(instance: dg.DagsterInstance, now: float, base_s: float) -> tuple[int, float]:
    """(hot path runs that failed in a row without completing a micro-batch, seconds left to wait
    before the next attempt). A run that completed micro-batches before it failed, or was canceled
    (a stop), ends the row: it is a new incident, retried after ``base_s``."""
    recent = instance.get_run_records(dg.RunsFilter(job_name=HOT_PATH_JOB), limit=20)
    failures = 0
    for record in recent:
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
        if record.dagster_run.tags.get(MICRO_BATCHES_TAG, "0") != "0":
            break
    if not failures:
        return 0, 0.0
    ended = recent[0].end_time or recent[0].update_timestamp.timestamp()
    return failures, max(0.0, ended + min(RETRY_MAX_S, base_s * 2 ** (failures - 1)) - now)


def bronze_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, keep_alive: bool = True, retry_base_s: float = RETRY_BASE_S
) -> dg.SensorResult | dg.SkipReason:
    """Observe ``raw_events``'s Delta version and start the hot path when none is running: always
    (``keep_alive``, so a commit is picked up within the hot path's poll) or when silver is behind.

    A hot path whose heartbeat stopped is marked failed (with its micro-batch), and a failed or
    killed one is retried for the same bronze without waiting for new events, after a backoff that
    doubles with each failure in a row (``retry_base_s``: 2 s, 4 s, … up to RETRY_MAX_S).
    """
    store = lake.lake()
    version = store.version(RAW_EVENTS)
    if version is None:
        return dg.SkipReason("bronze raw_events does not exist yet")
    observation = dg.AssetObservation(asset_key=RAW_EVENTS.name, metadata={"delta_version": version})
    observations = [observation] if context.cursor != str(version) else []
    instance = context.instance
    in_flight = [
        record
        for job in _CARRIERS
        for record in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE_RUNS))
    ]
    if _fail_dead_runs(instance, in_flight):
        return dg.SensorResult(
            skip_reason="a run is in flight; it or the next one picks this up",
            asset_events=observations,
            cursor=str(version),
        )
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    failures, wait_s = _backoff(instance, time.time(), retry_base_s)
    # After a failure gold may be behind silver (the hot path catches it up first), bronze or not.
    if version <= watermark and not keep_alive and not failures:
        return dg.SensorResult(
            skip_reason=f"silver is up to date with bronze v{version}", asset_events=observations, cursor=str(version)
        )
    if wait_s:
        return dg.SensorResult(
            skip_reason=f"{failures} hot path run(s) failed in a row: next attempt in {wait_s:.0f} s",
            asset_events=observations,
            cursor=str(version),
        )
    bronze_range = f"v{watermark + 1}-v{version}" if version > watermark else f"none (up to date at v{version})"
    latest = instance.get_run_records(dg.RunsFilter(job_name=HOT_PATH_JOB), limit=1)
    after = latest[0].dagster_run.run_id if latest else "none"
    return dg.SensorResult(
        # The key names the versions left and the run it follows: a tick evaluated twice (a daemon
        # restart) requests once, while a hot path that failed (its key is spent) or ended is
        # followed by a new request for the same versions.
        run_requests=[
            dg.RunRequest(
                run_key=f"raw_events@{bronze_range}/after:{after}",
                tags={BRONZE_VERSION_TAG: str(version), BRONZE_RANGE_TAG: bronze_range},
            )
        ],
        asset_events=observations,
        cursor=str(version),
    )


def bronze_sensor_definition(
    interval_s: int, keep_alive: bool = True, retry_base_s: float = RETRY_BASE_S
) -> dg.SensorDefinition:
    """:func:`bronze_sensor` ticking every ``interval_s`` seconds (``EVENTLAKE_SENSOR_INTERVAL_S``);
    ``keep_alive``: keep a hot path running while bronze is idle (``EVENTLAKE_HOT_PATH_IDLE_S`` 0)."""

    def evaluate(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult | dg.SkipReason:
        return bronze_sensor(context, lake, keep_alive, retry_base_s)

    return dg.sensor(
        name="bronze_sensor",
        job_name=HOT_PATH_JOB,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps the hot_path run going (or starts it when bronze has versions silver has not "
        "processed); restarts it, with backoff, when it failed or its process died.",
    )(evaluate)
