"""Worker processes, or a Ray cluster, for the silver step's per-row stages (decode, validation,
enrichment, property scrub).

Those stages walk rows in Python and hold the GIL, so a second core needs a second process. A
stage is a module-level function from a frame to a frame of the same rows
(:func:`pipelines.decoding.decode_fields`, :func:`pipelines.validation.failed_checks`,
:func:`pipelines.transform.enrich_fields`, :func:`pipelines.scrubbing.scrub_json_texts`): one
implementation, whichever engine runs it.

* Embedded (the default): :class:`RowPool` cuts a frame into one contiguous slice per process:
  the calling process works on the first slice itself while each worker gets another as Arrow
  IPC; the results come back in slice order, so concatenated they are the rows a single-process
  run gives. Validation and enrichment stay in the calling process (``host_workers=False``): a
  worker lives one micro-batch, and would first import Great Expectations (2.6 s) or load the
  user-agent parsers' rules (1.4 s), more than its slice saves.
* Ray (``EVENTLAKE_RAY_ADDRESS`` set): the frame becomes a Daft DataFrame of one partition per
  CPU of the cluster, and every stage runs as a Daft batch UDF on Ray's nodes (Daft's flotilla
  runner, whose workers live as long as the connection: they import and load once); the rows
  come back to the calling process in order. The caller, the silver step's Dagster run, stays the
  one writer: it checks consistency against silver's key index, deduplicates, and makes the one
  Delta commit of the micro-batch, and gold reads silver's change feed as before.

Workers are spawned (not forked: Polars' thread pool is not fork-safe) once per silver run and
only for batches of at least ``silver_parallel_min_rows`` rows: a worker takes ~0.5 s to start
(it imports only Polars, orjson and the two per-row modules; it is started when the pool opens),
and the calling process decodes its own slice meanwhile.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import polars as pl
import pyarrow as pa

log = logging.getLogger(__name__)

#: Seconds a Ray head's GCS is given to answer a gRPC handshake before a batch stays on this host.
_RAY_PROBE_S = 3.0

#: A per-row stage: a module-level function of a frame (and plain, picklable arguments) that
#: returns a frame of the same rows in the same order.
Stage = Callable[..., pl.DataFrame]


@dataclass(frozen=True)
class Parallelism:
    """How many processes run the per-row stages (``workers``; ``0`` = one per CPU core), the
    smallest batch, in rows, worth starting worker processes or going to Ray for (``min_rows``),
    and the Ray cluster to run them on (``ray_address``, ``host:port`` of its head; ``None``:
    embedded)."""

    workers: int = 1
    min_rows: int = 50_000
    ray_address: str | None = None

    def processes(self, rows: int) -> int:
        """Processes to use for a batch of ``rows`` rows, the calling one included (1: no workers).

        At most one per CPU core (the stages are CPU-bound: more would only add start-up time and
        memory) and one per row.
        """
        cores = os.cpu_count() or 1
        wanted = min(self.workers or cores, cores, rows)
        return max(wanted, 1) if rows >= self.min_rows else 1


class RowPool:
    """Runs a per-row stage over slices of a frame, in this process and workers, or on a Ray
    cluster (a context manager).

    With one process (a small batch, or ``workers=1``) :meth:`map` calls the function on the
    whole frame, so every path runs the same code on the rows. :attr:`engine` says where they run
    and ``processes`` how many processes (Ray: the cluster's CPUs when connecting, one partition
    each).
    """

    def __init__(self, parallelism: Parallelism, rows: int) -> None:
        self._ray_address = parallelism.ray_address if rows >= parallelism.min_rows else None
        self._local = parallelism.processes(rows)
        self.processes = 1 if self._ray_address else self._local
        self._executor: ProcessPoolExecutor | None = None

    @property
    def engine(self) -> str:
        """Where batches of at least two rows per process run: ``ray``, ``processes`` or ``local``."""
        return "ray" if self._ray_address else "processes" if self.processes > 1 else "local"

    def __enter__(self) -> RowPool:
        """Start the worker processes, or connect to the Ray cluster. A cluster that cannot be
        reached is logged (a warning) and the batch runs on this host's processes instead: a
        backlog is worked off either way, and the run's ``engine`` says where."""
        if self._ray_address:
            try:
                self.processes = _connect_ray(self._ray_address)
            except OSError as error:  # ConnectionError, a timeout, an unknown host
                log.warning(
                    "Ray cluster at %s unreachable (%s): this batch runs on this host", self._ray_address, error
                )
                self._ray_address, self.processes = None, self._local
        if self.processes > 1 and not self._ray_address:
            self._executor = ProcessPoolExecutor(
                self.processes - 1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent
            )
            for _ in range(self.processes - 1):  # start the workers now: they import meanwhile
                self._executor.submit(_warm_up)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)

    def map(self, fn: Stage, frame: pl.DataFrame, *args: Any, host_workers: bool = True) -> pl.DataFrame:
        """``fn(frame, *args)``, computed slice by slice: the slices' results concatenated in order.

        ``fn`` must be a module-level function (workers import it by name) whose arguments
        pickle. ``host_workers=False``: on this host, the whole frame in this process (for a stage
        whose start-up in a worker costs more than its slice saves); on Ray, spread as any other.
        Raises what ``fn`` raises (on Ray: wrapped in ``ray.exceptions.RayTaskError``,
        which is also an instance of the original error's class), and on Ray its failures (a node
        lost mid-stage: ``ray.exceptions.RayError``): the run fails and is run again.
        """
        if frame.height < max(self.processes, 2):
            return fn(frame, *args)
        if self._ray_address:
            return _map_on_ray(fn, _slices(frame, self.processes), args)
        if self._executor is None or not host_workers:
            return fn(frame, *args)
        slices = _slices(frame, self.processes)
        futures: list[Future[pl.DataFrame]] = [
            self._executor.submit(_run, fn, _to_ipc(part), args) for part in slices[1:]
        ]
        own = fn(slices[0], *args)
        return pl.concat([own, *(future.result() for future in futures)])


def _connect_ray(address: str) -> int:
    # Once per process: Daft's runner is chosen once and keeps the cluster's actors, so the
    # connection is kept too (after ray.shutdown, a new connection failed: "Can't find actor").
    # A head stopped or restarted later ends the process within ~60 s (Ray's own check): the hot
    # path starts again, and its micro-batch is run again from the watermark.
    import daft
    import ray

    if not ray.is_initialized():
        _probe_gcs(address)
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
        daft.set_runner_ray(noop_if_initialized=True)
    return max(int(ray.cluster_resources().get("CPU", 1)), 1)


def _probe_gcs(address: str) -> None:
    # ray.init waits minutes for a head that is not there, and for ever on a port where something
    # else listens: a gRPC handshake with the head's GCS (a gRPC server) must complete first.
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=_RAY_PROBE_S)
    except grpc.FutureTimeoutError as error:
        raise ConnectionError(f"no gRPC server (a Ray head's GCS) answered in {_RAY_PROBE_S:.0f} s") from error
    finally:
        channel.close()


def _slices(frame: pl.DataFrame, count: int) -> list[pl.DataFrame]:
    # ``count`` contiguous slices of (nearly) equal size, in order.
    bounds = [frame.height * i // count for i in range(count + 1)]
    return [frame.slice(start, end - start) for start, end in zip(bounds, bounds[1:], strict=False)]


def _map_on_ray(fn: Stage, slices: list[pl.DataFrame], args: tuple[Any, ...]) -> pl.DataFrame:
    # The stage as a Daft batch UDF over one partition per slice (a partition per table given to
    # from_arrow: no repartitioning, ~0.15 s less per call than into_partitions); its output schema
    # is what it returns for no rows, its result struct is unnested back into columns.
    import daft

    schema = fn(slices[0].clear(), *args).to_arrow().schema
    columns = slices[0].columns

    @daft.func.batch(return_dtype=daft.DataType.from_arrow_type(pa.struct(list(schema))), unnest=True)
    def stage(*series: daft.Series) -> pa.Array:
        part = pl.from_arrow(pa.table([s.to_arrow() for s in series], names=columns))
        assert isinstance(part, pl.DataFrame)
        return fn(part, *args).to_arrow().cast(schema).combine_chunks().to_struct_array()

    rows = daft.from_arrow([part.to_arrow() for part in slices])
    result = pl.from_arrow(rows.select(stage(*(daft.col(c) for c in columns))).to_arrow())
    assert isinstance(result, pl.DataFrame)
    return result


def _exit_with_parent() -> None:
    # A worker blocks on its task queue, which never closes when the parent is killed (SIGKILL,
    # or SIGTERM without unwinding): watch the parent's sentinel and leave with it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _warm_up() -> None:
    # What workers run, imported before the first slice arrives.
    import pipelines.decoding  # noqa: F401
    import pipelines.scrubbing  # noqa: F401


def _to_ipc(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_ipc_stream(sink, compression="uncompressed")
    return sink.getvalue()


def _run(fn: Stage, ipc: bytes, args: tuple[Any, ...]) -> pl.DataFrame:
    return fn(pl.read_ipc_stream(io.BytesIO(ipc)), *args)
