"""Durable group commit: many requests, one Delta append per micro-batch.

Requests hand their rows to :class:`GroupCommitWriter` and wait; a background flusher
commits everything buffered every ``interval_ms`` or as soon as ``max_rows`` are waiting,
then wakes each request with the bronze version that holds its rows. A request is only
acknowledged after that commit, and a failed commit fails every request in the micro-batch
(nothing of it is acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from warehouse.lake import Lake
from warehouse.tables import RAW_EVENTS

log = logging.getLogger(__name__)


class CommitError(RuntimeError):
    """The micro-batch holding a request's rows could not be committed to bronze."""


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitWriter:
    """Buffers bronze rows from concurrent requests and commits them together.

    Args:
        lake: the lake holding ``raw_events``.
        interval_ms: longest time a row waits in the buffer (ms).
        max_rows: commit early once this many rows are buffered.
    """

    def __init__(self, lake: Lake, interval_ms: int, max_rows: int) -> None:
        self._lake = lake
        self._interval_s = interval_ms / 1000
        self._max_rows = max_rows
        self._pending: list[_Pending] = []
        self._buffered_rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Create the bronze table if needed and start the background flusher."""
        await asyncio.to_thread(self._lake.ensure, RAW_EVENTS)
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit what is still buffered, then stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(self, rows: list[dict[str, Any]]) -> int:
        """Buffer ``rows`` and wait until they are committed.

        Returns:
            The bronze Delta version whose commit holds the rows.

        Raises:
            CommitError: the commit failed; none of the rows are acknowledged.
        """
        if self._task is None or self._closing:
            raise CommitError("the group-commit writer is not running")
        pending = _Pending(rows)
        self._pending.append(pending)
        self._buffered_rows += len(rows)
        if self._buffered_rows >= self._max_rows:
            self._wake.set()
        return await pending.done

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the interval elapsed: flush what is there
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
            if self._pending:
                await self._flush()
            if self._closing and not self._pending:
                return

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._buffered_rows = 0
        rows = [row for pending in batch for row in pending.rows]
        try:
            table = pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)
            version = await asyncio.to_thread(self._lake.append, RAW_EVENTS, table)
        except Exception as exc:  # every failure must reach the waiting requests as a 503
            log.exception("group commit of %d rows from %d requests failed", len(rows), len(batch))
            for pending in batch:
                if not pending.done.done():  # the client may have gone away meanwhile
                    pending.done.set_exception(CommitError(f"bronze commit failed: {exc}"))
            return
        log.debug("committed %d rows from %d requests as bronze v%d", len(rows), len(batch), version)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(version)
