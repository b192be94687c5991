"""The hot path: one long-lived run that turns each new bronze micro-batch into gold.

A run started per micro-batch paid ~7 s to start its process (Python, Dagster and this code
location's imports) and ~5 s to warm up (Great Expectations context, device-detector's regexes,
the scrub rules) before ~4 s of actual work (bench/bench_freshness.py). The ``hot_path`` job keeps
one process instead: its op polls bronze's Delta version against silver's watermark and, whenever
silver is behind, executes ``ingest_to_gold`` in this process, on the same Dagster instance. Each
micro-batch is therefore still a normal ``ingest_to_gold`` run in the UI (its steps, asset
materializations, checks and logs; tagged ``eventlake/hot_path`` with this run's id), only
without the start-up.

While idle it waits for bronze's next commit (``poll_interval_s``; the table stays open and reads
only new log entries), so a micro-batch starts within that of a commit. The loop ends (the run
succeeds) after ``max_lifetime_s`` (so code and dependency changes are picked up), when bronze
stayed idle for ``idle_exit_s`` if set (0, the default: never), or as soon as another run of its
code location is queued: they run one at a time (the maintenance location's beside them), so a
replay, a reprocess or a manual materialization waits at most one micro-batch. The bronze sensor
then starts the next hot path (:mod:`pipelines.defs.ingest`). A failed micro-batch fails the hot
path run with the child run's id; nothing is lost, as bronze keeps the events and silver's
watermark did not move, and the sensor retries. A thread stamps the run's :data:`HEARTBEAT_TAG` every
:data:`HEARTBEAT_INTERVAL_S`: a hot path whose process was killed stops stamping, and the sensor
marks it failed and starts another.
"""

import fcntl
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from pipelines.defs.ingest import (
    BRONZE_VERSION_TAG,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TAG,
    HOT_PATH_JOB,
    HOT_PATH_TAG,
    MICRO_BATCHES_TAG,
)
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from pipelines.maintenance import expire_consumed_bronze
from warehouse.gold import served_watermarks
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS

log = logging.getLogger(__name__)

#: The lock a hot path holds while it runs (next to the warehouse file): one at a time.
HOT_PATH_LOCK = "hot_path.lock"


class HotPathConfig(dg.Config):
    """How long the hot path keeps its process (seconds; the job's defaults come from ``EVENTLAKE_HOT_PATH_*``)."""

    poll_interval_s: float = Field(default=0.25, gt=0, description="Pause between bronze checks while idle (s).")
    idle_exit_s: float = Field(
        default=0, ge=0, description="Stop after bronze stayed unchanged this long (s); 0: never."
    )
    max_lifetime_s: float = Field(default=3600, gt=0, description="Stop starting micro-batches after this long (s).")
    log_retention_minutes: float = Field(
        default=0.5,
        ge=0,
        description="After each micro-batch, expire bronze's log entries consumed this long ago (min).",
    )


#: The tag Dagster gives each launched run: the name of its code location (``workspace.yaml``).
CODE_LOCATION_TAG = "dagster/code_location"


def _queued_elsewhere(instance: dg.DagsterInstance, location: str | None) -> bool:
    """Whether a run of this code location (``location``; any, when unknown) waits in the queue:
    runs of the maintenance location run beside the hot path and do not stop it."""
    tags = {CODE_LOCATION_TAG: location} if location else None
    runs = dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags=tags)
    return bool(instance.get_run_records(runs, limit=1))


class _Progress:
    """What the heartbeat thread reports: micro-batches done so far (the loop counts them)."""

    batches = 0


@contextmanager
def _heartbeat(instance: dg.DagsterInstance, run_id: str, progress: _Progress) -> Iterator[None]:
    """Stamp ``run_id``'s :data:`HEARTBEAT_TAG` (Unix time, s) and :data:`MICRO_BATCHES_TAG` now and
    every :data:`HEARTBEAT_INTERVAL_S` from a thread, until the block ends. A stamp that fails (the
    instance's database locked) is logged and retried at the next beat: the thread never dies
    while the loop runs, or the sensor would start a second hot path beside this one."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                stamp = {HEARTBEAT_TAG: f"{time.time():.3f}", MICRO_BATCHES_TAG: str(progress.batches)}
                instance.add_run_tags(run_id, stamp)
            except Exception:
                log.warning("hot path %s: heartbeat not recorded; retrying", run_id, exc_info=True)
            if stop.wait(HEARTBEAT_INTERVAL_S):
                return

    beater = threading.Thread(target=beat, name="hot-path-heartbeat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()


@contextmanager
def _sole_hot_path(lock_file: Path, instance: dg.DagsterInstance, run_id: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (``fcntl.flock``) for the block, so two hot path
    processes never run micro-batches at once: one that hung (stopped, swapping) long enough for
    the sensor to fail it and start another must not resume beside it (both processed the same
    bronze: every event twice in silver). The OS frees the lock when its process dies. While another
    holds it, waits, and gives up if this run is no longer in progress.

    Raises:
        dagster.Failure: this run was marked failed or canceled while it waited.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not _in_progress(instance, run_id):
                    raise dg.Failure(description="marked as ended while waiting for another hot path") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _in_progress(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status == dg.DagsterRunStatus.STARTED


def _gold_behind(store: Lake, serving: Path, marts: Sequence[str]) -> bool:
    """Whether the served gold misses some of silver: a micro-batch failed (or was stopped) after
    silver committed, and no new bronze would start another. Read from the serving snapshot, whose
    watermarks are the ones published."""
    silver = store.version(EVENTS)
    if silver is None:
        return False
    marks = served_watermarks(serving, marts)
    return marks is None or len(marks) < len(marts) or min(mark.silver_version for mark in marks.values()) < silver


class _Bronze:
    """Bronze's version, kept open between polls: each poll reads only the log entries committed
    since the last one (not the whole log, as opening the table does)."""

    def __init__(self, store: Lake) -> None:
        self.store = store
        self.table = store.open(RAW_EVENTS)

    def version(self) -> int | None:
        if self.table is None:
            self.table = self.store.open(RAW_EVENTS)
            return None if self.table is None else self.table.version()
        self.table.update_incremental()
        return self.table.version()


def _stream(
    context: dg.OpExecutionContext,
    config: HotPathConfig,
    store: Lake,
    serving: Path,
    job: dg.JobDefinition,
    progress: _Progress,
    catch_up: bool,
) -> dg.Output[int]:
    """Run ``job`` in this process whenever bronze is ahead of silver (and first, if ``catch_up``:
    gold is behind silver), until a stop condition; after each, expire the bronze log entries every
    consumer has read (:func:`pipelines.maintenance.expire_consumed_bronze`).

    Raises:
        dagster.Failure: a micro-batch run failed (its run id in the metadata), or this run was
            marked as ended elsewhere (the sensor took it for dead).
    """
    started = last_work = time.monotonic()
    bronze = _Bronze(store)
    # Only micro-batches move silver's watermark while this runs (runs are serialized).
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    while True:
        now = time.monotonic()
        if not _in_progress(context.instance, context.run_id):
            raise dg.Failure(description="this run was marked as ended (no heartbeat seen): stopping")
        if _queued_elsewhere(context.instance, context.run.tags.get(CODE_LOCATION_TAG)):
            reason = "another run is queued"
            break
        if now - started >= config.max_lifetime_s:
            reason = f"lifetime limit ({config.max_lifetime_s:.0f} s)"
            break
        version = bronze.version()
        if not catch_up and (version is None or version <= watermark):
            if config.idle_exit_s and now - last_work >= config.idle_exit_s:
                reason = f"bronze idle for {config.idle_exit_s:.0f} s"
                break
            time.sleep(config.poll_interval_s)
            continue
        catch_up = False
        result = job.execute_in_process(
            instance=context.instance,
            tags={HOT_PATH_TAG: context.run_id, BRONZE_VERSION_TAG: str(version)},
            raise_on_error=False,
        )
        if not result.success:
            raise dg.Failure(
                description=f"micro-batch run {result.run_id} (bronze v{version}) failed; see that run's logs",
                metadata={"failed_run_id": result.run_id, "bronze_version": version},
            )
        progress.batches += 1
        expire_consumed_bronze(store, serving, timedelta(minutes=config.log_retention_minutes))
        # A backlog larger than one silver micro-batch takes several turns of this loop.
        watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
        context.log.debug("micro-batch run %s done (bronze was at v%d)", result.run_id, version)
        last_work = time.monotonic()
    context.log.info("hot path stops after %d micro-batches: %s", progress.batches, reason)
    return dg.Output(progress.batches, metadata={"micro_batches": progress.batches, "stop_reason": reason})


def hot_path_job(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec],
    micro_batch: UnresolvedAssetJobDefinition,
    config: HotPathConfig,
) -> dg.JobDefinition:
    """The ``hot_path`` job: :func:`stream_to_gold` running ``micro_batch`` (``ingest_to_gold``) over
    ``assets`` in its process; ``config``: the launchpad's defaults."""

    @dg.op(
        description="Loop: when bronze has versions silver has not processed, run ingest_to_gold in this "
        "process; stop at the lifetime limit, when another run is queued or (if set) when idle."
    )
    def stream_to_gold(
        context: dg.OpExecutionContext,
        config: HotPathConfig,
        lake: LakeResource,
        warehouse: WarehouseResource,
        silver_step: SilverResource,
    ) -> dg.Output[int]:
        """Process micro-batches until a stop condition; output how many ``ingest_to_gold`` runs it made.

        Raises:
            dagster.Failure: an ``ingest_to_gold`` micro-batch failed (its run id in the metadata).
        """
        store = lake.lake()
        # ingest_to_gold bound to this run's resources (so it writes where the hot path reads).
        resources = {"lake": lake, "warehouse": warehouse, "silver_step": silver_step}
        job = dg.Definitions(assets=assets, jobs=[micro_batch], resources=resources).resolve_job_def(micro_batch.name)
        progress = _Progress()
        lock_file = Path(warehouse.path).parent / HOT_PATH_LOCK
        with (
            _heartbeat(context.instance, context.run_id, progress),
            _sole_hot_path(lock_file, context.instance, context.run_id),
        ):
            marts = list(warehouse.options().marts)
            serving = Path(warehouse.serving_path)
            return _stream(context, config, store, serving, job, progress, _gold_behind(store, serving, marts))

    # In-process: the loop runs in the run's own process, so killing that process stops the hot path
    # and its micro-batch (a step process of its own outlived it, and both raced the restarted one).
    @dg.job(
        name=HOT_PATH_JOB,
        executor_def=dg.in_process_executor,
        config={"ops": {"stream_to_gold": {"config": config.model_dump()}}},
        description="Long-lived hot path the bronze sensor keeps running: runs ingest_to_gold in-process for "
        "each new bronze micro-batch (no per-run start-up) until the lifetime limit or another queued run.",
    )
    def hot_path() -> None:
        stream_to_gold()

    return hot_path
