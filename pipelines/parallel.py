"""Worker processes for the silver step's per-row Python stages (decode, property scrub).

Those stages walk rows in Python and hold the GIL, so a second core needs a second process.
:class:`RowPool` cuts a frame into one contiguous slice per process: the calling process works
on the first slice itself while each worker gets another as Arrow IPC; the results come back in
slice order, so concatenated they are the rows a single-process run gives.

Workers are spawned (not forked: Polars' thread pool is not fork-safe) once per silver run and
only for batches of at least ``silver_parallel_min_rows`` rows: a worker takes ~0.5 s to start
(it imports only Polars, orjson and the two per-row modules; it is started when the pool opens),
and the calling process decodes its own slice meanwhile.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import polars as pl

R = TypeVar("R")


@dataclass(frozen=True)
class Parallelism:
    """How many processes run the per-row stages (``workers``; ``0`` = one per CPU core) and the
    smallest batch, in rows, worth starting worker processes for (``min_rows``)."""

    workers: int = 1
    min_rows: int = 50_000

    def processes(self, rows: int) -> int:
        """Processes to use for a batch of ``rows`` rows, the calling one included (1: no workers).

        At most one per CPU core (the stages are CPU-bound: more would only add start-up time and
        memory) and one per row.
        """
        cores = os.cpu_count() or 1
        wanted = min(self.workers or cores, cores, rows)
        return max(wanted, 1) if rows >= self.min_rows else 1


class RowPool:
    """Runs a per-row function over slices of a frame, in this process and workers (a context manager).

    With one process (a small batch, or ``workers=1``) :meth:`map` calls the function on the
    whole frame, so both paths run the same code on the rows.
    """

    def __init__(self, parallelism: Parallelism, rows: int) -> None:
        self.processes = parallelism.processes(rows)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> RowPool:
        if self.processes > 1:
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

    def map(self, fn: Callable[..., R], frame: pl.DataFrame, *args: Any) -> list[R]:
        """``[fn(slice, *args) for slice in slices of frame]``, in slice order.

        ``fn`` must be a module-level function (workers import it by name) whose arguments and
        result pickle. Raises what ``fn`` raises.
        """
        if self._executor is None or frame.height < self.processes:
            return [fn(frame, *args)]
        bounds = [frame.height * i // self.processes for i in range(self.processes + 1)]
        slices = [frame.slice(start, end - start) for start, end in zip(bounds, bounds[1:], strict=False)]
        futures: list[Future[R]] = [self._executor.submit(_run, fn, _to_ipc(part), args) for part in slices[1:]]
        own = fn(slices[0], *args)
        return [own, *(future.result() for future in futures)]


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


def _run(fn: Callable[..., R], ipc: bytes, args: tuple[Any, ...]) -> R:
    return fn(pl.read_ipc_stream(io.BytesIO(ipc)), *args)
