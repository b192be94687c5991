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
stayed idle for ``idle_exit_s`` if set (0, the default: never), or as soon as another run is
queued: runs are serialized (``max_concurrent_runs: 1``), so a replay, a reprocess or a manual
materialization waits at most one micro-batch. The bronze sensor then starts the next hot path
(:mod:`pipelines.defs.ingest`). A failed micro-batch fails the hot path run with the child run's
id; nothing is lost, as bronze keeps the events and silver's watermark did not move, and the
sensor retries. A thread stamps the run's :data:`HEARTBEAT_TAG` every
:data:`HEARTBEAT_INTERVAL_S`: a hot path whose process was killed stops stamping, and the sensor
marks it failed and starts another.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from pipelines.defs.ingest import BRONZE_VERSION_TAG, HEARTBEAT_INTERVAL_S, HEARTBEAT_TAG, HOT_PATH_JOB, HOT_PATH_TAG
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS


class HotPathConfig(dg.Config):
    """How long the hot path keeps its process (seconds; the job's defaults come from ``EVENTLAKE_HOT_PATH_*``)."""

    poll_interval_s: float = Field(default=0.5, gt=0, description="Pause between bronze checks while idle (s).")
    idle_exit_s: float = Field(
        default=0, ge=0, description="Stop after bronze stayed unchanged this long (s); 0: never."
    )
    max_lifetime_s: float = Field(default=3600, gt=0, description="Stop starting micro-batches after this long (s).")


def _queued_elsewhere(instance: dg.DagsterInstance) -> bool:
    return bool(instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=1))


@contextmanager
def _heartbeat(instance: dg.DagsterInstance, run_id: str) -> Iterator[None]:
    """Stamp ``run_id``'s :data:`HEARTBEAT_TAG` (Unix time, s) now and every
    :data:`HEARTBEAT_INTERVAL_S` from a thread, until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            instance.add_run_tags(run_id, {HEARTBEAT_TAG: f"{time.time():.3f}"})
            if stop.wait(HEARTBEAT_INTERVAL_S):
                return

    beater = threading.Thread(target=beat, name="hot-path-heartbeat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()


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
    context: dg.OpExecutionContext, config: HotPathConfig, store: Lake, job: dg.JobDefinition
) -> dg.Output[int]:
    """Run ``job`` in this process whenever bronze is ahead of silver, until a stop condition.

    Raises:
        dagster.Failure: a micro-batch run failed (its run id in the metadata).
    """
    started = last_work = time.monotonic()
    batches = 0
    bronze = _Bronze(store)
    # Only micro-batches move silver's watermark while this runs (runs are serialized).
    watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
    while True:
        now = time.monotonic()
        if _queued_elsewhere(context.instance):
            reason = "another run is queued"
            break
        if now - started >= config.max_lifetime_s:
            reason = f"lifetime limit ({config.max_lifetime_s:.0f} s)"
            break
        version = bronze.version()
        if version is None or version <= watermark:
            if config.idle_exit_s and now - last_work >= config.idle_exit_s:
                reason = f"bronze idle for {config.idle_exit_s:.0f} s"
                break
            time.sleep(config.poll_interval_s)
            continue
        result = job.execute_in_process(
            instance=context.instance,
            tags={HOT_PATH_TAG: context.run_id, BRONZE_VERSION_TAG: str(version)},
            raise_on_error=False,
        )
        batches += 1
        if not result.success:
            raise dg.Failure(
                description=f"micro-batch run {result.run_id} (bronze v{version}) failed; see that run's logs",
                metadata={"failed_run_id": result.run_id, "bronze_version": version},
            )
        # A backlog larger than one silver micro-batch takes several turns of this loop.
        watermark = store.watermark(EVENTS.name, RAW_EVENTS.name)
        context.log.debug("micro-batch run %s done (bronze was at v%d)", result.run_id, version)
        last_work = time.monotonic()
    context.log.info("hot path stops after %d micro-batches: %s", batches, reason)
    return dg.Output(batches, metadata={"micro_batches": batches, "stop_reason": reason})


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
        with _heartbeat(context.instance, context.run_id):
            return _stream(context, config, store, job)

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
