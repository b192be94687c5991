"""Durable group commit: many requests, one Delta append per micro-batch.

Requests hand their rows to :class:`GroupCommitWriter` and wait; a background flusher
commits everything buffered as soon as rows wait, but never sooner than ``interval_ms`` after the
previous commit started (nor before it ended), then wakes each request with the bronze version that
holds its rows: a lone request is committed at once, and under load commits follow each other
every ``interval_ms``. So a worker makes at most
``1000 / interval_ms`` commits a second whatever the load: more load makes larger commits, not more
of them (the Delta log, its checkpoints and every reader of it grow with commits, not rows). A
request is only acknowledged after that commit, and a failed commit fails every request in the
micro-batch (nothing of it is acknowledged).

The buffer is bounded: rows waiting plus rows being committed may not pass ``max_buffer_rows``
events or ``max_buffer_bytes`` bytes of payload JSON. A request that does not fit is refused at
once with :class:`BufferFullError` (the API answers 503 with ``Retry-After``) instead of growing
memory while storage is slow.

With ``node`` set (the worker is one of a uvicorn master's), the worker does not commit: every
:data:`~ingest_api.node_commit.SHIP_INTERVAL_S` it sends what is buffered to its node's committer
process (:mod:`ingest_api.node_commit`), which commits the node's batches together at most once per
``interval_ms``. So the commit bound holds per node, whatever its worker count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

# delta-rs's writer imports pyarrow.dataset (and with it pandas, ~1 s) on its first commit: imported
# with this module, at the worker's start, so the first requests do not wait for it.
import pyarrow.dataset  # noqa: F401

from ingest_api import metrics
from ingest_api.node_commit import SHIP_INTERVAL_S, CommitterLostError, Node, NodeLink, ShipError, ipc_bytes
from warehouse.contract.rows import bronze_table
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS

log = logging.getLogger(__name__)


class CommitError(RuntimeError):
    """The micro-batch holding a request's rows could not be committed to bronze."""


class BufferFullError(RuntimeError):
    """The bounded buffer has no room for a request's rows right now; retry later."""


class RequestOverBufferError(BufferFullError):
    """A request's rows alone are over the buffer's bounds: they can never be buffered."""


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    size: int
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitWriter:
    """Buffers bronze rows from concurrent requests and commits them together.

    Args:
        lake: the lake holding ``raw_events``.
        interval_ms: least time between the starts of two commits (ms); a row waits in the buffer at
            most this long, plus the commit before it when that one takes longer.
        max_buffer_rows: most rows buffered or being committed (back-pressure bound).
        max_buffer_bytes: most bytes of row payload JSON buffered or being committed.
        node: this worker's node (:func:`~ingest_api.node_commit.node_of`), whose committer process
            commits its rows; ``None``: the process is a node by itself and commits them.
    """

    def __init__(
        self,
        lake: Lake,
        interval_ms: int,
        max_buffer_rows: int = 200_000,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        node: Node | None = None,
    ) -> None:
        self.lake = lake
        self._link = NodeLink(node) if node is not None else None
        self._interval_s = interval_ms / 1000 if node is None else SHIP_INTERVAL_S
        self._max_buffer_rows = max_buffer_rows
        self._max_buffer_bytes = max_buffer_bytes
        self._pending: list[_Pending] = []
        self._held_rows = 0  # buffered + being committed
        self._held_bytes = 0
        self._arrived = asyncio.Event()  # rows wait (or stop() was called)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._shipping: set[asyncio.Task[None]] = set()
        self._closing = False
        # Lineage in the Delta log: which ingest process wrote each commit.
        self._commit_metadata = {"eventlake.writer": f"{socket.gethostname()}:{os.getpid()}"}

    @property
    def running(self) -> bool:
        """The flusher runs and new rows are accepted."""
        return self._task is not None and not self._task.done() and not self._closing

    async def committer_reachable(self) -> bool:
        """This process commits, or it reaches its node's committer (starting one if there is none)."""
        return self._link is None or await self._link.connect()

    @property
    def committer_stalled(self) -> bool:
        """The node's committer has not answered a batch for a while (``NodeLink.stalled``)."""
        return self._link is not None and self._link.stalled

    @property
    def has_room(self) -> bool:
        """The buffer is below both bounds."""
        return self._held_rows < self._max_buffer_rows and self._held_bytes < self._max_buffer_bytes

    async def start(self) -> None:
        """Create the bronze table if needed and start the background flusher.

        A bronze table with foreign columns does not stop the start: ``/readyz`` reports it and
        every commit fails with 503 until storage is fixed (the API recovers without a restart).
        """
        try:
            await asyncio.to_thread(self.lake.ensure, RAW_EVENTS)
        except ValueError:
            log.exception("bronze %s cannot be appended to", RAW_EVENTS.name)
        if self._link is not None:
            await self._link.connect()  # or start the node's committer; retried at each tick if need be
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new rows, commit what is still buffered (answering its requests), then stop."""
        self._closing = True
        self._stopping.set()
        self._arrived.set()
        if self._task is not None:
            await self._task
        if self._shipping:
            await asyncio.gather(*self._shipping)
        if self._link is not None:
            await self._link.close()

    async def submit(self, rows: list[dict[str, Any]], size: int) -> int:
        """Buffer ``rows`` (``size``: length of their payload JSON texts) and wait until they are committed.

        Returns:
            The bronze Delta version whose commit holds the rows.

        Raises:
            BufferFullError: the buffer has no room for ``rows`` now (nothing was buffered);
                :class:`RequestOverBufferError` when it never would.
            CommitError: the writer is stopping, or the commit failed; none of the rows are
                acknowledged.
        """
        if not self.running:
            raise CommitError("the group-commit writer is not running")
        if len(rows) > self._max_buffer_rows or size > self._max_buffer_bytes:
            bounds = f"{self._max_buffer_rows} / {self._max_buffer_bytes}"
            raise RequestOverBufferError(f"{len(rows)} events / {size} bytes; the buffer holds {bounds}")
        if self._held_rows + len(rows) > self._max_buffer_rows or self._held_bytes + size > self._max_buffer_bytes:
            raise BufferFullError(
                f"buffer holds {self._held_rows} events / {self._held_bytes} bytes; "
                f"limits {self._max_buffer_rows} / {self._max_buffer_bytes}"
            )
        pending = _Pending(rows, size)
        self._pending.append(pending)
        self._hold(len(rows), size)
        self._arrived.set()
        return await pending.done

    def _hold(self, rows: int, size: int) -> None:
        self._held_rows += rows
        self._held_bytes += size

    def _report_buffer(self) -> None:
        """The buffer gauges, set once per micro-batch (at its flush and its answer), not per request:
        in multiprocess mode each set is a write to a shared file."""
        metrics.BUFFER_EVENTS.set(self._held_rows)
        metrics.BUFFER_BYTES.set(self._held_bytes)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_start = float("-inf")
        while True:
            if self._pending:  # a commit, as soon as the interval since the last one's start allows
                due = last_start + self._interval_s - loop.time()
                if due > 0 and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=due)  # woken early only to stop
                last_start = loop.time()
                await self._flush()
            elif self._closing:
                return
            else:  # idle until a request's rows (or stop()) arrive
                self._arrived.clear()
                await self._arrived.wait()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._report_buffer()
        if self._link is not None:  # the node's committer commits it; the next tick does not wait
            task = asyncio.create_task(self._ship(batch))
            self._shipping.add(task)
            task.add_done_callback(self._shipping.discard)
            return
        rows = [row for pending in batch for row in pending.rows]
        started = time.perf_counter()
        try:
            version = await asyncio.to_thread(self._write, rows)
        except Exception as exc:  # every failure must reach the waiting requests as a 503
            log.exception("group commit of %d rows from %d requests failed", len(rows), len(batch))
            metrics.COMMIT_FAILURES.inc()
            self._resolve(batch, error=CommitError(f"bronze commit failed: {exc}"))
            return
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.FLUSH_ROWS.observe(len(rows))
        log.debug("committed %d rows from %d requests as bronze v%d", len(rows), len(batch), version)
        self._resolve(batch, version=version)

    def _write(self, rows: list[dict[str, Any]]) -> int:
        """One Delta append of ``rows``, in a worker thread. The Arrow table is built here, once per
        micro-batch (per request, Arrow's fixed cost of ~50 µs a call would come back), not on the
        event loop: requests go on being answered between the GIL's switches."""
        return self.lake.append(RAW_EVENTS, bronze_table(rows), self._commit_metadata)

    async def _ship(self, batch: list[_Pending]) -> None:
        """Send a micro-batch to the node's committer; answer its requests with the reply."""
        assert self._link is not None
        rows = [row for pending in batch for row in pending.rows]
        try:
            body = await asyncio.to_thread(lambda: ipc_bytes(bronze_table(rows)))
            version = await self._link.ship(body, len(rows))
        except ShipError as exc:  # a failed commit was counted by the committer; a lost one is counted here
            if isinstance(exc, CommitterLostError):
                metrics.COMMIT_FAILURES.inc()
            log.warning("micro-batch of %d rows not acknowledged: %s", len(rows), exc)
            self._resolve(batch, error=CommitError(str(exc)))
            return
        except Exception as exc:  # building it failed: its requests must still be answered
            log.exception("micro-batch of %d rows could not be sent", len(rows))
            self._resolve(batch, error=CommitError(f"micro-batch could not be sent: {exc}"))
            return
        self._resolve(batch, version=version)

    def _resolve(self, batch: list[_Pending], version: int = -1, error: Exception | None = None) -> None:
        self._hold(-sum(len(p.rows) for p in batch), -sum(p.size for p in batch))
        self._report_buffer()
        for pending in batch:
            if pending.done.done():  # the client may have gone away meanwhile
                continue
            if error is not None:
                pending.done.set_exception(error)
            else:
                pending.done.set_result(version)
