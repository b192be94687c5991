"""Durable group commit: many requests, one Delta append per micro-batch.

Requests hand their rows to :class:`GroupCommitWriter` and wait; a background flusher
commits everything buffered, starting a commit at most once every ``interval_ms`` (the next one
starts ``interval_ms`` after the previous one started, or when it ends if it took longer), then
wakes each request with the bronze version that holds its rows. So a worker makes at most
``1000 / interval_ms`` commits a second whatever the load: more load makes larger commits, not more
of them (the Delta log, its checkpoints and every reader of it grow with commits, not rows). A
request is only acknowledged after that commit, and a failed commit fails every request in the
micro-batch (nothing of it is acknowledged).

The buffer is bounded: rows waiting plus rows being committed may not pass ``max_buffer_rows``
events or ``max_buffer_bytes`` bytes of payload JSON. A request that does not fit is refused at
once with :class:`BufferFullError` (the API answers 503 with ``Retry-After``) instead of growing
memory while storage is slow.

With ``node`` set (the worker is one of a uvicorn master's), the node's workers share one committer
(:mod:`ingest_api.node_commit`): the others send it their micro-batches, so the bound is per node,
not per worker. A committer that stops keeps committing its peers' batches until they have stopped
too (at most :data:`PEER_STOP_WAIT_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# delta-rs's writer imports pyarrow.dataset (and with it pandas, ~1 s) on its first commit: imported
# with this module, at the worker's start, so the first requests do not wait for it.
import pyarrow as pa
import pyarrow.dataset  # noqa: F401

from ingest_api import metrics
from ingest_api.node_commit import FAILED, REFUSED, SHIP_INTERVAL_S, NodeLink, ShipError, ipc_bytes
from warehouse.contract.rows import bronze_table
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS

log = logging.getLogger(__name__)

#: How long a stopping committer goes on committing for peers that have not stopped yet (s).
PEER_STOP_WAIT_S = 10.0


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


@dataclass
class _PeerBatch:
    """A micro-batch a peer sent this committer: its rows, their payload bytes, and how to answer."""

    table: pa.Table
    size: int
    reply: Callable[[int], None]


class GroupCommitWriter:
    """Buffers bronze rows from concurrent requests and commits them together.

    Args:
        lake: the lake holding ``raw_events``.
        interval_ms: least time between the starts of two commits (ms); a row waits in the buffer at
            most this long, plus the commit before it when that one takes longer.
        max_buffer_rows: most rows buffered or being committed (back-pressure bound).
        max_buffer_bytes: most bytes of row payload JSON buffered or being committed (per worker:
            a committer's peers bound their own batches).
        node: the node's socket name (:func:`~ingest_api.node_commit.node_address`), or ``None`` when
            this process is the node by itself.
    """

    def __init__(
        self,
        lake: Lake,
        interval_ms: int,
        max_buffer_rows: int = 200_000,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        node: str | None = None,
    ) -> None:
        self.lake = lake
        self._interval_s = interval_ms / 1000
        self._max_buffer_rows = max_buffer_rows
        self._max_buffer_bytes = max_buffer_bytes
        self._pending: list[_Pending] = []
        self._from_peers: list[_PeerBatch] = []
        self._shipping: set[asyncio.Task[None]] = set()
        self._link = NodeLink(node, self._take_peer_batch) if node is not None else None
        self._held_rows = 0  # buffered + being committed
        self._held_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Lineage in the Delta log: which ingest process wrote each commit (and how many of its
        # node's other workers' micro-batches it holds: ``eventlake.peer_batches``).
        self._commit_metadata = {"eventlake.writer": f"{socket.gethostname()}:{os.getpid()}"}

    @property
    def running(self) -> bool:
        """The flusher runs and new rows are accepted."""
        return self._task is not None and not self._task.done() and not self._closing

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
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2  # the first worker binds, then listens: a peer connects again
            while not await self._link.establish() and loop.time() < deadline:
                await asyncio.sleep(0.01)
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new rows, commit what is still buffered (answering its requests), then stop.

        A committer goes on committing its peers' batches until they have all stopped (at most
        :data:`PEER_STOP_WAIT_S`); a peer waits for the answers to what it sent.
        """
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._shipping:
            await asyncio.gather(*self._shipping)
        if self._link is not None:
            await self._link.close()

    @property
    def committer(self) -> bool:
        """This worker commits (its node's committer, or a node by itself); else it is a peer."""
        return self._link is None or self._link.committer

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
        return await pending.done

    def _hold(self, rows: int, size: int) -> None:
        self._held_rows += rows
        self._held_bytes += size

    def _report_buffer(self) -> None:
        """The buffer gauges, set once per micro-batch (at its flush and its answer), not per request:
        in multiprocess mode each set is a write to a shared file."""
        metrics.BUFFER_EVENTS.set(self._held_rows)
        metrics.BUFFER_BYTES.set(self._held_bytes)

    def _take_peer_batch(self, table: pa.Table, size: int, reply: Callable[[int], None]) -> None:
        """A peer's micro-batch joins this committer's next commit; refused once the flusher is done."""
        if self._task is None or self._task.done():
            reply(REFUSED)
            return
        self._from_peers.append(_PeerBatch(table, size, reply))

    def _last_tick(self, now: float, stop_deadline: float) -> bool:
        """Stopping, and no peer needs this committer any more (or they had their time)."""
        if not self._closing:
            return False
        return self._link is None or not self._link.committer or self._link.peers == 0 or now > stop_deadline

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop_deadline = float("inf")
        while True:
            if self._closing and stop_deadline == float("inf"):
                stop_deadline = loop.time() + PEER_STOP_WAIT_S
            last = self._last_tick(loop.time(), stop_deadline)
            wait = started + (self._interval_s if self.committer else SHIP_INTERVAL_S) - loop.time()
            if wait > 0 and not last:
                with contextlib.suppress(TimeoutError):  # the interval elapsed: commit what is there
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)  # woken early only to stop
                self._wake.clear()
            started = loop.time()  # a tick: a commit of what is there, or nothing to commit
            if self._pending or self._from_peers:
                await self._flush()
            if last and not self._pending and not self._from_peers:
                return

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self._link is not None and not await self._link.establish():
            self._resolve(batch, error=CommitError("no committer on this node could be reached"))
            return
        if not self.committer:
            task = asyncio.create_task(self._ship(batch))
            self._shipping.add(task)
            task.add_done_callback(self._shipping.discard)
            return
        peers, self._from_peers = self._from_peers, []
        self._report_buffer()
        rows = [row for pending in batch for row in pending.rows]
        count = len(rows) + sum(peer.table.num_rows for peer in peers)
        started = time.perf_counter()
        try:
            version = await asyncio.to_thread(self._write, rows, [peer.table for peer in peers])
        except Exception as exc:  # every failure must reach the waiting requests as a 503
            log.exception("group commit of %d rows (%d from peers) failed", count, count - len(rows))
            metrics.COMMIT_FAILURES.inc()
            self._resolve(batch, error=CommitError(f"bronze commit failed: {exc}"))
            for peer in peers:
                peer.reply(FAILED)
            return
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.FLUSH_ROWS.observe(count)
        log.debug("committed %d rows (%d from peers) as bronze v%d", count, count - len(rows), version)
        self._resolve(batch, version=version)
        for peer in peers:
            peer.reply(version)

    def _write(self, rows: list[dict[str, Any]], from_peers: list[pa.Table]) -> int:
        """One Delta append of ``rows`` and the peers' tables, in a worker thread. The Arrow table is
        built here, once per micro-batch (per request, Arrow's fixed cost of ~50 µs a call would come
        back), not on the event loop: requests go on being answered between the GIL's switches."""
        tables = ([bronze_table(rows)] if rows else []) + from_peers
        metadata = {**self._commit_metadata, "eventlake.peer_batches": str(len(from_peers))}
        return self.lake.append(RAW_EVENTS, pa.concat_tables(tables), metadata)

    async def _ship(self, batch: list[_Pending]) -> None:
        """Send a peer's micro-batch to the node's committer and answer its requests with the reply."""
        self._report_buffer()
        rows = [row for pending in batch for row in pending.rows]
        size = sum(pending.size for pending in batch)
        assert self._link is not None
        try:
            body = await asyncio.to_thread(lambda: ipc_bytes(bronze_table(rows)))
            version = await self._link.ship(body, len(rows), size)
        except ShipError as exc:
            log.warning("micro-batch of %d rows not acknowledged: %s", len(rows), exc)
            self._resolve(batch, error=CommitError(str(exc)))
            return
        except Exception as exc:  # building the batch failed: its requests must still be answered
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
