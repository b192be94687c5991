"""One bronze committer per ingest node: a node's workers hand their micro-batches to one of them.

A node is the worker processes one uvicorn master spawned (or one process alone). Each worker runs
a :class:`~ingest_api.group_commit.GroupCommitWriter`; the first to bind the node's Unix socket (in
Linux's abstract namespace: no file, the kernel frees the name when the process dies) is the node's
**committer**. It commits its own requests' rows together with the micro-batches the other workers,
its **peers**, send it, at most once per interval: the node makes at most ``1000 / interval_ms``
commits a second whatever its worker count, and its workers never conflict on the Delta log.

A peer builds its buffered rows into an Arrow table every :data:`SHIP_INTERVAL_S`, sends it as an
Arrow IPC stream and answers its requests once the committer replies with the bronze version holding
it. Wire format (both ways, big-endian): a peer sends ``seq: u64, payload bytes: u64, body length:
u32`` then the IPC body; the committer answers ``seq: u64, version: i64``, where ``version`` is the
bronze version, :data:`FAILED` (the commit failed) or :data:`REFUSED` (the committer is stopping and
did not take the batch).

Failures keep the ingest contract (2xx only after the commit): a peer whose committer dies fails the
batches it had sent and not heard back about (503; committed or not, they were never acknowledged,
and a client's retry duplicates at most in bronze, where silver's dedup absorbs it like any lost
answer). It then binds the name itself or connects to the peer that did. A refused batch was not
committed: it is sent again to the next committer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import socket
import struct
from collections.abc import Callable

import pyarrow as pa

log = logging.getLogger(__name__)

#: How often a peer sends what its requests buffered (s): short next to the commit interval, so
#: a row waits at most about this long more than on the committer itself.
SHIP_INTERVAL_S = 0.005
#: A committer's reply: the batch's commit failed (nothing acknowledged).
FAILED = -1
#: A committer's reply: it is stopping and did not take the batch (safe to send again).
REFUSED = -2
_BATCH = struct.Struct("!QQI")  # seq, payload bytes, body length
_REPLY = struct.Struct("!Qq")  # seq, version or FAILED / REFUSED

#: What the committer does with a peer's batch: (rows, payload bytes, reply(version)).
BatchHandler = Callable[[pa.Table, int, Callable[[int], None]], None]


class ShipError(RuntimeError):
    """A peer's batch has no bronze version: no committer could be reached, it went away before
    answering (the batch may or may not be committed), it refused the batch, or its commit failed."""


def node_address(lake_root: str) -> str | None:
    """The node's socket name for a worker writing to ``lake_root``; ``None`` when the process is a
    node by itself (not a worker of a uvicorn master: ``multiprocessing.parent_process()`` is ``None``).

    uvicorn starts its workers with multiprocessing's spawn, so workers of one master share its pid.
    The name is in the abstract namespace (a leading NUL byte, Linux ``unix(7)``).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return None
    lake = hashlib.sha256(str(lake_root).encode()).hexdigest()[:16]
    return f"\0eventlake-ingest-{parent.pid}-{lake}"


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC stream (what a peer sends)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


class NodeLink:
    """A worker's place in its node: the committer (serving its peers) or a peer of it.

    Args:
        address: the node's abstract socket name (:func:`node_address`).
        on_batch: how the committer takes a peer's batch; it must call ``reply`` exactly once.
    """

    def __init__(self, address: str, on_batch: BatchHandler) -> None:
        self.address = address
        self._on_batch = on_batch
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._seq = 0
        self._lock = asyncio.Lock()

    @property
    def committer(self) -> bool:
        """This worker is its node's committer."""
        return self._server is not None

    @property
    def peers(self) -> int:
        """Peers connected to this committer now."""
        return len(self._connections)

    async def establish(self) -> bool:
        """Become the node's committer, or connect to it, unless this worker already is one or the
        other; one attempt of each (the caller tries again at its next tick). Whether it worked."""
        async with self._lock:
            return self.committer or self._connected or await self._try_serve() or await self._try_connect()

    @property
    def _connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def _try_serve(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.address)
        except OSError:  # EADDRINUSE: another worker is the committer
            sock.close()
            return False
        self._server = await asyncio.start_unix_server(self._serve_peer, sock=sock)
        log.info("worker %d is the node's bronze committer", os.getpid())
        return True

    async def _try_connect(self) -> bool:
        # Connected here, then handed over: uvloop's open_unix_connection refuses abstract names
        # (EINVAL). A local connect does not wait: it fails at once when nobody listens.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.address)
            reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        except OSError:  # nobody listens yet (or any more)
            sock.close()
            return False
        self._reader_task = asyncio.create_task(self._read_replies(reader), name="node-commit-replies")
        log.info("worker %d sends its micro-batches to the node's committer", os.getpid())
        return True

    # --- committer side -------------------------------------------------------------------------

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)

        def reply(seq: int) -> Callable[[int], None]:
            def send(version: int) -> None:
                if not writer.is_closing():
                    writer.write(_REPLY.pack(seq, version))

            return send

        try:
            while True:
                seq, size, length = _BATCH.unpack(await reader.readexactly(_BATCH.size))
                table = pa.ipc.open_stream(await reader.readexactly(length)).read_all()
                self._on_batch(table, size, reply(seq))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer stopped or died; its unanswered batches answer no one
        finally:
            self._connections.discard(task)
            writer.close()

    # --- peer side ------------------------------------------------------------------------------

    async def ship(self, body: pa.Buffer, rows: int, size: int) -> int:
        """Send one batch (``body``: :func:`ipc_bytes`; ``rows`` of ``size`` payload bytes) and wait
        for the committer's answer; the bronze version holding it.

        Raises:
            ShipError: not connected, the connection broke before the answer (maybe committed), the
                committer refused the batch (stopping; not committed) or its commit failed.
        """
        if not self._connected:
            raise ShipError("not connected to the node's committer")
        assert self._writer is not None
        self._seq += 1
        seq = self._seq
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = answer
        try:
            self._writer.write(_BATCH.pack(seq, size, body.size))
            self._writer.write(memoryview(body))
            await self._writer.drain()
        except ConnectionError as exc:
            self._waiting.pop(seq, None)
            raise ShipError(f"lost the node's committer: {exc}") from exc
        version = await answer
        if version == REFUSED:
            raise ShipError("the node's committer is stopping and did not take the batch")
        if version == FAILED:
            raise ShipError(f"the node's committer failed to commit {rows} rows")
        return version

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                seq, version = _REPLY.unpack(await reader.readexactly(_REPLY.size))
                answer = self._waiting.pop(seq, None)
                if answer is not None and not answer.done():
                    answer.set_result(version)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("lost the node's committer with %d batches unanswered", len(self._waiting))
        finally:
            if self._writer is not None:
                self._writer.close()
            waiting, self._waiting = self._waiting, {}
            for answer in waiting.values():
                if not answer.done():
                    answer.set_exception(ShipError("the node's committer went away before answering"))

    async def close(self) -> None:
        """Stop serving peers (a committer) or close the connection (a peer)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._connections, return_exceptions=True)
            self._server = None
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
