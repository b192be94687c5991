"""One bronze committer per ingest node: a process that commits its node's micro-batches together.

A node is the worker processes one uvicorn master spawned. Its workers do not append to bronze
themselves: every :data:`SHIP_INTERVAL_S` each builds what its requests buffered into an Arrow table
and sends it (an Arrow IPC stream) over a Unix socket to the node's committer process, which commits
every batch that reached it in one Delta append — as soon as batches wait, but never sooner than the
flush interval after the previous commit started — then answers each worker with the bronze version;
the worker answers its requests only then (2xx after the commit, as always). So a node makes at
most ``1000 / interval_ms`` commits a second whatever its worker count, its workers never conflict
on the Delta log, and the committer's CPU (Parquet encoding, the log) is off the workers' event
loops. A process that is not a uvicorn worker is a node by itself and
commits in-process (:class:`~ingest_api.group_commit.GroupCommitWriter`).

Election: the socket's name is in Linux's abstract namespace (``unix(7)``: no file; the kernel frees
it with the last descriptor). A worker that cannot connect binds the name; the one that succeeds
listens, starts the committer (``python -m ingest_api.node_commit``) with the listening socket, and
connects like every other worker (connections wait in the backlog while the committer starts).

Wire format (both ways, big-endian): a worker sends ``seq: u64, body length: u32`` then the IPC
body; the committer answers ``seq: u64, version: i64``, where ``version`` is the bronze version or
:data:`FAILED` (the commit failed; nothing acknowledged).

Failures keep the ingest contract: a worker whose committer dies, or does not answer within
:data:`ANSWER_TIMEOUT_S`, fails the batches it has not heard back about (503: committed or not, they
were never acknowledged, and a client's retry duplicates at most in bronze, where silver's dedup
absorbs it like any lost answer), and the next worker to send starts a new committer. Both ends check
that the other runs as the same user (``SO_PEERCRED``): an abstract name has no permissions. The
committer answers a batch that is not in bronze's schema with :data:`FAILED` alone, so it cannot fail
the others' commit. It stops on SIGTERM/SIGINT once no worker is connected (at most
:data:`STOP_WAIT_S` later), or once the uvicorn master has gone and so have its workers, committing
what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from ingest_api import metrics
from warehouse.lake.maintenance import auto_compactor
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS
from warehouse.settings import Settings, read_settings

log = logging.getLogger(__name__)

#: How often a worker sends what its requests buffered (s): short next to the commit interval, so
#: a row waits about this much longer than in a single-process node.
SHIP_INTERVAL_S = 0.005
#: A committer's reply: the batch's commit failed (nothing acknowledged).
FAILED = -1
#: How long a stopping committer goes on committing for workers still connected (s).
STOP_WAIT_S = 10.0
#: How long a worker waits for the committer's answer to a batch before failing it (503; the batch
#: may still be committed later, unacknowledged): a committer that hangs must not hang every request.
ANSWER_TIMEOUT_S = 30.0
#: A worker whose oldest unanswered batch is older than this is not ready (``/readyz``).
STALLED_AFTER_S = 5.0
#: How often an idle committer looks whether its master is still there (s).
IDLE_CHECK_S = 0.2
#: Least time between two committer starts by one worker (s): a committer that cannot start is
#: not restarted in a tight loop.
SPAWN_EVERY_S = 1.0

_BATCH = struct.Struct("!QI")  # seq, body length
_REPLY = struct.Struct("!Qq")  # seq, version or FAILED


class ShipError(RuntimeError):
    """A worker's batch has no bronze version: the committer's commit failed, or
    :class:`CommitterLostError`."""


class CommitterLostError(ShipError):
    """No committer could be reached, or it went away before answering (the batch may or may not be
    committed)."""


class Node(NamedTuple):
    """A node's committer socket (an abstract name) and its uvicorn master's pid."""

    address: str
    master_pid: int


def node_of(lake_root: str) -> Node | None:
    """The node of this worker, writing to ``lake_root``; ``None`` when the process is a node by itself
    (not a worker of a uvicorn master: ``multiprocessing.parent_process()`` is ``None``).

    uvicorn starts its workers with multiprocessing's spawn, so the workers of one master share its pid.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    return Node(node_name(parent.pid, lake_root), parent.pid)


def node_name(master_pid: int, lake_root: str) -> str:
    """The abstract socket name (leading NUL) of the node of uvicorn master ``master_pid`` writing
    to ``lake_root``. Pids repeat across pid namespaces (two containers on one network namespace,
    each with uvicorn as pid 1) and over time, so the name also holds this pid namespace's inode and
    the master's start time (proc(5): field 22 of ``/proc/<pid>/stat``), hashed.

    Raises:
        FileNotFoundError: no such process, or no ``/proc`` (not Linux).
    """
    started = Path(f"/proc/{master_pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    identity = f"{os.stat('/proc/self/ns/pid').st_ino}/{master_pid}/{started}/{lake_root}"
    return f"\0eventlake-ingest-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def same_user(sock: socket.socket) -> bool:
    """The process at the other end of the Unix socket ``sock`` runs as this process's user
    (``SO_PEERCRED``, unix(7)): an abstract socket name has no permissions, so anyone on the machine
    could connect to a committer, or bind a dead committer's name, without this check."""
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def bronze_lake(settings: Settings) -> Lake:
    """The lake the ingest API appends bronze to, compacting small files as it goes (one per process)."""
    compactor = auto_compactor(settings.auto_compact_files, settings.auto_compact_mb)
    return Lake(settings.lake_root, storage_options=settings.storage_options, compactor=compactor)


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC stream (what a worker sends)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


class NodeLink:
    """A worker's connection to its node's committer, started by this worker when there is none."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._sent_at: dict[int, float] = {}  # monotonic time each unanswered batch was sent
        self._seq = 0
        self._spawned_at = float("-inf")
        self._committer: subprocess.Popen[bytes] | None = None  # the one this worker started, if any
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Connected to a committer now."""
        return self._writer is not None and not self._writer.is_closing()

    @property
    def stalled(self) -> bool:
        """A batch has waited more than :data:`STALLED_AFTER_S` for the committer's answer."""
        return bool(self._sent_at) and time.monotonic() - min(self._sent_at.values()) > STALLED_AFTER_S

    async def connect(self) -> bool:
        """Connect to the node's committer, starting it first when nobody serves the name (and this
        worker has not started one in the last :data:`SPAWN_EVERY_S`). Whether it is connected."""
        async with self._lock:
            if self.connected:
                return True
            sock = self._try_connect()
            if sock is None:  # nobody serves the name: start a committer, or another worker just did
                self._try_start()
                sock = self._try_connect()
            if sock is None:
                return False
            reader, self._writer = await asyncio.open_unix_connection(sock=sock)
            self._reader_task = asyncio.create_task(self._read_replies(reader), name="node-commit-replies")
            return True

    def _try_connect(self) -> socket.socket | None:
        # Connected here, then handed to asyncio: uvloop's open_unix_connection refuses abstract names
        # (EINVAL). A local connect does not wait: it fails at once when nobody listens.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.node.address)
        except OSError:
            sock.close()
            return None
        if not same_user(sock):
            log.error("refused the node's committer socket: it belongs to another user")
            sock.close()
            return None
        return sock

    def _try_start(self) -> None:
        """Bind the node's name and start the committer on it, unless another worker holds the name."""
        if self._committer is not None:
            self._committer.poll()  # reaps the one this worker started before, once it has exited
        now = time.monotonic()
        if now - self._spawned_at < SPAWN_EVERY_S:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.node.address)
        except OSError:  # EADDRINUSE: another worker started one meanwhile
            sock.close()
            return
        self._spawned_at = now
        sock.listen(128)  # from here on, workers' connections wait in the backlog
        args = [sys.executable, "-m", "ingest_api.node_commit", str(sock.fileno()), str(self.node.master_pid)]
        self._committer = subprocess.Popen(args, pass_fds=[sock.fileno()])
        sock.close()  # the committer holds the name now
        log.info("worker %d started the node's bronze committer (pid %d)", os.getpid(), self._committer.pid)

    async def ship(self, body: pa.Buffer, rows: int) -> int:
        """Send one batch (``body``: :func:`ipc_bytes` of ``rows`` rows) and wait for the committer's
        answer; the bronze version holding it.

        Raises:
            CommitterLostError: no committer, or the connection broke before the answer (maybe
                committed). ShipError: the commit failed.
        """
        if not await self.connect():
            raise CommitterLostError("no committer on this node could be reached")
        assert self._writer is not None
        self._seq += 1
        seq = self._seq
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = answer
        try:
            self._writer.write(_BATCH.pack(seq, body.size))
            self._writer.write(memoryview(body))
            await self._writer.drain()
        except ConnectionError as exc:
            self._waiting.pop(seq, None)
            raise CommitterLostError(f"lost the node's committer: {exc}") from exc
        self._sent_at[seq] = time.monotonic()
        try:
            version = await asyncio.wait_for(answer, timeout=ANSWER_TIMEOUT_S)
        except TimeoutError as exc:
            raise CommitterLostError(f"the node's committer did not answer in {ANSWER_TIMEOUT_S:.0f} s") from exc
        finally:
            self._waiting.pop(seq, None)
            self._sent_at.pop(seq, None)
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
                    answer.set_exception(CommitterLostError("the node's committer went away before answering"))

    async def close(self) -> None:
        """Close the connection (the committer stops once no worker is connected and the master is gone)."""
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


class NodeCommitter:
    """The committer process: takes the workers' batches and commits them together.

    Args:
        lake: the lake holding ``raw_events``.
        interval_ms: least time between the starts of two commits (ms).
        listener: the node's listening socket (bound and listening already).
        master_pid: the node's uvicorn master; once it has gone, and its workers too, so does the
            committer.
        max_batch_bytes: the largest batch a worker may send (bytes of IPC stream); a connection
            announcing more is closed.
    """

    def __init__(
        self, lake: Lake, interval_ms: int, listener: socket.socket, master_pid: int, max_batch_bytes: int
    ) -> None:
        self.lake = lake
        self._max_batch_bytes = max_batch_bytes
        self._last_worker_seen = 0.0  # loop time a worker was last connected
        self._interval_s = interval_ms / 1000
        self._listener = listener
        self._master_pid = master_pid
        self._batches: list[tuple[pa.Table, asyncio.StreamWriter, int]] = []
        self._workers: set[asyncio.StreamWriter] = set()
        self._stop_requested = False
        self._arrived = asyncio.Event()
        self._metadata = {"eventlake.writer": f"{socket.gethostname()}:{os.getpid()}"}

    def _master_alive(self) -> bool:
        """The master runs (a zombie, dead but not yet reaped by its parent, does not count: proc(5))."""
        try:
            stat = Path(f"/proc/{self._master_pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    async def run(self) -> None:
        """Serve the workers until stopped (module docstring): commit what they sent as soon as it
        arrives, but never sooner than ``interval_ms`` after the previous commit's start."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        server = await asyncio.start_unix_server(self._serve_worker, sock=self._listener)
        log.info("bronze committer %d serving node of uvicorn master %d", os.getpid(), self._master_pid)
        last_start = float("-inf")
        stop_deadline = float("inf")
        self._last_worker_seen = loop.time()
        while True:
            if stop_deadline == float("inf") and self._stop_requested:
                stop_deadline = loop.time() + STOP_WAIT_S
            finishing = self._finished(loop.time(), stop_deadline)
            if self._batches:  # a commit, as soon as the interval since the last one's start allows
                await asyncio.sleep(max(0.0, last_start + self._interval_s - loop.time()))
                last_start = loop.time()
                await self._commit()
            elif finishing:
                server.close()
                return
            else:  # idle: wait for a batch, looking at the master and the signals now and then
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout=IDLE_CHECK_S)

    def _finished(self, now: float, stop_deadline: float) -> bool:
        """Time to stop: asked to (SIGTERM/SIGINT) and no worker is connected, or they had
        :data:`STOP_WAIT_S`; or the master has gone and no worker has been connected for
        :data:`IDLE_CHECK_S` (workers a dead master left behind are still served)."""
        if self._stop_requested:
            return not self._workers or now > stop_deadline
        idle = not self._workers and now - self._last_worker_seen > IDLE_CHECK_S
        return idle and not self._master_alive()

    def _request_stop(self) -> None:
        self._stop_requested = True

    async def _serve_worker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not same_user(writer.get_extra_info("socket")):
            log.error("refused a connection from another user's process")
            writer.close()
            return
        self._workers.add(writer)
        self._last_worker_seen = asyncio.get_running_loop().time()
        try:
            while True:
                seq, length = _BATCH.unpack(await reader.readexactly(_BATCH.size))
                if length > self._max_batch_bytes:
                    log.error(
                        "a worker sent a %d-byte batch, over %d: connection closed", length, self._max_batch_bytes
                    )
                    return
                table = pa.ipc.open_stream(await reader.readexactly(length)).read_all()
                if not table.schema.equals(RAW_EVENTS.schema):  # never let one batch fail the others' commit
                    log.error("a worker sent a batch that is not in bronze's schema: refused")
                    writer.write(_REPLY.pack(seq, FAILED))
                    continue
                self._batches.append((table, writer, seq))
                self._arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker stopped or died; what it sent and has not heard back about answers no one
        except pa.ArrowException:
            log.exception("a worker sent a batch that is not an Arrow IPC stream: connection closed")
        finally:
            self._workers.discard(writer)
            self._last_worker_seen = asyncio.get_running_loop().time()
            writer.close()

    async def _commit(self) -> None:
        batches, self._batches = self._batches, []
        rows = sum(table.num_rows for table, _, _ in batches)
        started = time.perf_counter()
        try:
            workers = len({id(writer) for _, writer, _ in batches})
            version = await asyncio.to_thread(self._append, [table for table, _, _ in batches], workers)
        except Exception:  # every failure must reach the waiting workers (their requests get 503)
            log.exception("group commit of %d rows from %d batches failed", rows, len(batches))
            metrics.COMMIT_FAILURES.inc()
            version = FAILED
        else:
            metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
            metrics.FLUSH_ROWS.observe(rows)
        for _, writer, seq in batches:
            if not writer.is_closing():
                writer.write(_REPLY.pack(seq, version))

    def _append(self, tables: list[pa.Table], workers: int) -> int:
        """One Delta append of the batches; lineage in the commit: the committer (host:pid) and how
        many batches from how many workers it holds."""
        metadata = {**self._metadata, "eventlake.batches": str(len(tables)), "eventlake.workers": str(workers)}
        return self.lake.append(RAW_EVENTS, pa.concat_tables(tables), metadata)


def main(argv: list[str]) -> None:
    """``python -m ingest_api.node_commit LISTENING_FD MASTER_PID``: run a node's committer (started
    by a worker, :class:`NodeLink`), with the settings of the environment it inherits."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    settings: Settings = read_settings("ingest committer")
    listener = socket.socket(fileno=int(argv[0]))
    # A worker's batch holds at most its buffer's payload bytes, with the other columns beside them.
    max_batch = 4 * settings.max_buffer_bytes
    committer = NodeCommitter(bronze_lake(settings), settings.flush_interval_ms, listener, int(argv[1]), max_batch)
    asyncio.run(committer.run())


if __name__ == "__main__":
    main(sys.argv[1:])
