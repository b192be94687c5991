"""Ingest API throughput against the framework's own limit (a no-op FastAPI app), side by side.

For each uvicorn worker count (``--workers``), starts ``bench/noop_app.py`` (reads and
orjson-parses the body, stores nothing, answers at once) and the real API
(``tests.conftest.start_api``: a fresh data folder per run, rate limit lifted, default 50 ms
group commit), both with ``start_api``'s uvicorn command, and sends the same pre-built request
bodies to:

- ``noop /v1/events`` and ``eventlake /v1/events`` (native payloads, ``--batch`` events per request),
- ``noop /v1/batch`` and ``eventlake /v1/batch`` (Segment track messages, ``--batch`` per request),
- ``/batch/`` (PostHog events) and ``/com.snowplowanalytics.snowplow/tp2`` (Snowplow structured events), with
  ``--routes posthog snowplow``.

Each run sends all ``--events`` pre-built events once, then re-sends them until ``--duration``
seconds have passed, and prints events/s (acknowledged), requests/s, p50/p95/p99 latency,
errors (non-2xx and transport), the CPU used by the server, the clients and anything else (in
cores), server CPU per event, and ``x noop``: events/s as a ratio of the no-op server on the same
route and worker count. For eventlake runs it also prints the bronze commits and the mean group
commit duration (``eventlake_group_commit_seconds`` from ``/metrics``, which covers the workers
and the node's committer: the API runs with ``PROMETHEUS_MULTIPROC_DIR`` as under ``make up``); after each
run the server is stopped and bronze is read back: its row count must equal the events the API
acknowledged (``verified``). Warnings, errors and 4xx/5xx lines of its log are printed if there
are any.

The load comes from ``--procs`` client processes (not threads: one GIL would be the limit), which
keep ``--clients`` requests in flight in all on keep-alive connections, with a minimal asyncio
HTTP/1.1 client (pre-encoded requests, so that the client spends little CPU; there is no
wrk/hey/ab here). uvicorn's workers share one listening socket and keep-alive connections stay
with the worker that accepted them, which is often one worker for most of them; so, like a
round-robin load balancer, each client process spreads its connections evenly over the workers
before the clock starts: it finds the worker holding each accepted socket (``/proc/net/tcp`` and
``/proc/<pid>/fd``) and reopens connections until every worker has its share. Client and server
share the machine's cores, which the output states: compare the ratios within one run rather
than absolute numbers.

With ``--rate`` the load is an open loop instead: requests start on a fixed schedule (``--rate``
events/s in all) for ``--duration`` s over at most ``--clients`` connections, whatever the answers
do, and each latency counts from the request's planned start, so a queue in the server shows in the
percentiles instead of slowing the client down (a closed loop hides it). Measure the maximum with a
closed loop first, then the acknowledgement latency at a fraction of it.

Usage: .venv/bin/python bench/bench_ingest_limit.py [--events 100000] [--batch 100] [--clients 64]
       [--procs 2] [--duration 10] [--workers 1 2] [--routes native segment posthog snowplow]
       [--flush-ms 50] [--rate EVENTS_PER_S]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import conftest  # noqa: E402
from tests.conftest import Env, start_api  # noqa: E402
from warehouse.lake.tables import RAW_EVENTS  # noqa: E402

ROUTES = {
    "native": "/v1/events",
    "segment": "/v1/batch",
    "posthog": "/batch/",
    "snowplow": "/com.snowplowanalytics.snowplow/tp2",
}
TIMESTAMP_MS = 1714557600000  # 2024-05-01T10:00:00Z


# ---------------------------------------------------------------- request bodies


def native_body(prefix: str, batch: int) -> bytes:
    """One ``POST /v1/events`` body: ``batch`` native payloads of one click each."""
    return orjson.dumps(
        [
            {
                "uuid": f"{prefix}-{j}",
                "timestamp": TIMESTAMP_MS,
                "user": f"u{j % 500}",
                "page": "https://shop.example/p",
                "events": {"click": {"component": "buy"}},
            }
            for j in range(batch)
        ]
    )


def segment_body(prefix: str, batch: int) -> bytes:
    """One ``POST /v1/batch`` body: ``batch`` Segment track messages."""
    return orjson.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "messageId": f"{prefix}-{j}",
                    "userId": f"u{j % 500}",
                    "event": "Clicked",
                    "properties": {"component": "buy", "page": "https://shop.example/p"},
                    "timestamp": "2024-05-01T10:00:00Z",
                }
                for j in range(batch)
            ],
            "sentAt": "2024-05-01T10:00:01Z",
        }
    )


def posthog_body(prefix: str, batch: int) -> bytes:
    """One PostHog ``POST /batch/`` body: ``batch`` custom events with their uuids (the write key
    goes in the header, as for every route here)."""
    return orjson.dumps(
        {
            "batch": [
                {
                    "event": "clicked_buy",
                    "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-{j}")),
                    "distinct_id": f"u{j % 500}",
                    "properties": {"component": "buy", "$current_url": "https://shop.example/p", "$lib": "web"},
                    "timestamp": "2024-05-01T10:00:00Z",
                }
                for j in range(batch)
            ],
            "sent_at": "2024-05-01T10:00:01Z",
        }
    )


def snowplow_body(prefix: str, batch: int) -> bytes:
    """One Snowplow ``POST /com.snowplowanalytics.snowplow/tp2`` body: ``batch`` structured events, as
    the JavaScript tracker sends them (every value text)."""
    return orjson.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [
                {
                    "e": "se",
                    "se_ca": "shop",
                    "se_ac": "buy",
                    "eid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-{j}")),
                    "uid": f"u{j % 500}",
                    "aid": "shop",
                    "p": "web",
                    "tv": "js-4.10.1",
                    "url": "https://shop.example/p",
                    "dtm": str(TIMESTAMP_MS),
                    "stm": str(TIMESTAMP_MS + 1000),
                }
                for j in range(batch)
            ],
        }
    )


BODY = {"native": native_body, "segment": segment_body, "posthog": posthog_body, "snowplow": snowplow_body}


# ---------------------------------------------------------------- load generator (client processes)


@dataclass
class ClientResult:
    """What one client process measured between the start signal and its last answer."""

    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # 0 = transport error
    accepted: int = 0
    error_samples: list[str] = field(default_factory=list)


def _request(port: int, path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Write-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


@dataclass
class LoadSpec:
    """What one client process sends: its share of the bodies, to which route, how hard and how long."""

    port: int
    path: str
    key: str
    bodies: list[bytes]
    concurrency: int
    duration: float
    server_pgid: int  # uvicorn's process group: its workers hold the accepted sockets
    workers: int
    rate: float = 0.0  # open loop: requests/s this process starts on a fixed schedule (0: closed loop)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _socket_owners(pgid: int) -> dict[str, int]:
    """Socket inode → pid, for every socket open in a process of group ``pgid``."""
    owners = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (stat.parent / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[target[8:-1]] = int(stat.parent.name)
        except OSError:
            continue
    return owners


def _server_side_inodes(server_port: int) -> dict[int, str]:
    """Client port → inode of the server's socket of that connection (IPv4 loopback, ``/proc/net/tcp``)."""
    inodes = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local_port == server_port:
            inodes[remote_port] = fields[9]
    return inodes


async def _open_balanced(spec: LoadSpec, connect: Callable[[], Awaitable[Connection]]) -> list[Connection]:
    """``spec.concurrency`` connections, spread evenly over the server's worker processes.

    With one worker there is nothing to spread. Otherwise connections are opened (and probed,
    so the server has accepted them) and kept while the worker holding them is under its share,
    else closed, until every worker has its share; after 50 rounds the rest is opened unbalanced
    (with a warning; the per-worker CPU column of the table would show it).
    """
    if spec.workers == 1:
        return list(await asyncio.gather(*(connect() for _ in range(spec.concurrency))))
    share, remainder = divmod(spec.concurrency, spec.workers)
    kept: dict[int, list[Connection]] = {}  # worker pid → its connections
    for _ in range(50):
        missing = spec.concurrency - sum(len(c) for c in kept.values())
        if not missing:
            break
        opened = await asyncio.gather(*(connect() for _ in range(missing)))
        owners, inodes = _socket_owners(spec.server_pgid), _server_side_inodes(spec.port)
        for conn in opened:
            pid = owners.get(inodes.get(conn[1].get_extra_info("sockname")[1], ""), -1)
            if pid != -1 and pid not in kept and len(kept) < spec.workers:
                kept[pid] = []
            over_share = sum(len(c) > share for c in kept.values())
            if pid in kept and (len(kept[pid]) < share or (len(kept[pid]) == share and over_share < remainder)):
                kept[pid].append(conn)
            else:
                conn[1].close()
    connections = [conn for conns in kept.values() for conn in conns]
    if len(connections) < spec.concurrency:
        print(f"client {os.getpid()}: could not balance connections over the workers", file=sys.stderr)
        connections += await asyncio.gather(*(connect() for _ in range(spec.concurrency - len(connections))))
    return connections


async def _client_main(spec: LoadSpec, ready: Any, start: Any) -> ClientResult:
    result = ClientResult()
    requests = [_request(spec.port, spec.path, spec.key, body) for body in spec.bodies]
    healthz = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\n\r\n".encode()
    next_index = 0

    async def connect(probe: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        if probe:  # before the clock starts: make sure the connection is accepted and served
            writer.write(healthz)
            await _read_response(reader)
        return reader, writer

    connections = await _open_balanced(spec, lambda: connect(probe=True))
    ready.put(os.getpid())
    await asyncio.get_running_loop().run_in_executor(None, start.wait)

    async def send(conn: Connection, request: bytes, since: float) -> Connection:
        """One request on ``conn``; its latency counts from ``since``. The connection to use next."""
        reader, writer = conn
        try:
            writer.write(request)
            status, body, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.statuses[0] += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"transport: {exc!r}")
            writer.close()
            return await connect()
        result.latencies.append(time.perf_counter() - since)
        result.statuses[status] += 1
        if 200 <= status < 300:
            result.accepted += int(orjson.loads(body).get("accepted", 0))
        elif len(result.error_samples) < 5:
            result.error_samples.append(f"{status}: {body[:300].decode(errors='replace')}")
        if not keep_alive:
            writer.close()
            return await connect()
        return conn

    async def closed_loop(conn: Connection) -> None:
        """Send the next body as soon as the previous answer arrived: every body once, then round
        again until the duration is over."""
        nonlocal next_index
        while next_index < len(requests) or time.monotonic() < deadline:
            request = requests[next_index % len(requests)]
            next_index += 1
            conn = await send(conn, request, time.perf_counter())
        conn[1].close()

    async def open_loop() -> None:
        """Start request k at ``k / rate`` s for the duration, whatever the answers do. Its latency
        counts from that planned start, so waiting for a free connection counts too (no coordinated
        omission: a slow server cannot slow the client down and hide its queue)."""
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        for conn in connections:
            idle.put_nowait(conn)
        in_flight: set[asyncio.Task[None]] = set()

        async def one(request: bytes, planned: float) -> None:
            conn = await idle.get()
            idle.put_nowait(await send(conn, request, planned))

        began, k = time.perf_counter(), 0
        while time.monotonic() < deadline:
            planned = began + k / spec.rate
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
            task = asyncio.create_task(one(requests[k % len(requests)], planned))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            k += 1
        await asyncio.gather(*in_flight)
        while not idle.empty():
            idle.get_nowait()[1].close()

    cpu = os.times()
    result.started = time.monotonic()
    deadline = result.started + spec.duration
    if spec.rate:
        await open_loop()
    else:
        await asyncio.gather(*(closed_loop(conn) for conn in connections))
    result.ended = time.monotonic()
    after = os.times()
    result.cpu_s = (after.user - cpu.user) + (after.system - cpu.system)
    return result


def _client_process(spec: LoadSpec, ready: Any, start: Any, out: Any) -> None:
    out.put(asyncio.run(_client_main(spec, ready, start)))


# ---------------------------------------------------------------- servers and CPU accounting


def group_cpu_s(pgid: int) -> dict[int, float]:
    """User + system CPU seconds of each live process in process group ``pgid`` (uvicorn and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after "(comm)": state, ppid, pgrp, ...; utime, stime at 11, 12
            cpu[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``), to see load from other processes."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A running uvicorn (the no-op app or the real API) in its own process group."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    workers: int
    key: str = "none"

    def stop(self) -> None:
        """Terminate uvicorn (which flushes the real API's buffer) and wait for it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def start_noop(env: Env, workers: int) -> Server:
    """Serve ``bench/noop_app.py`` exactly like the real API: through ``start_api`` itself.

    ``start_api``'s uvicorn command (flags, environment, process group) is kept and only the app
    is swapped for ``noop_app:app`` (with ``--app-dir bench``); the no-op app needs no write key,
    but ``start_api`` reads one, so a dummy is written first.
    """
    (env.data_dir / "local_write_key").write_text("noop\n")
    real_popen = subprocess.Popen

    def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert "ingest_api.main:app" in cmd, f"start_api's uvicorn command changed: {cmd}"
        at = cmd.index("ingest_api.main:app")
        return real_popen([*cmd[:at], "noop_app:app", "--app-dir", str(ROOT / "bench"), *cmd[at + 1 :]], **kwargs)

    with mock.patch.object(conftest.subprocess, "Popen", popen):
        api = start_api(env, workers=workers)
    return Server(api.url, int(api.url.rsplit(":", 1)[1]), api.proc, api.log, workers, api.key)


# ---------------------------------------------------------------- one measured run


@dataclass
class Run:
    """One row of the table."""

    target: str
    route: str
    workers: int
    requests: int
    elapsed: float
    latencies: list[float]
    statuses: Counter[int]
    accepted: int
    server_cpu: float
    server_cpu_split: list[float]
    client_cpu: float
    machine_cpu: float
    error_samples: list[str]
    verified: str = "-"
    commits: int | None = None
    commit_ms: float | None = None  # mean duration of one group commit (Arrow table + Delta append)

    @property
    def statuses_2xx(self) -> int:
        """Requests answered with a 2xx status."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        """Non-2xx answers plus transport errors."""
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def pct_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0..1) in ms, nearest rank."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered))) - 1))] * 1000


def load(server: Server, route: str, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """Send ``bodies`` once, then again until ``--duration`` s passed, from ``--procs`` processes.

    ``--clients`` requests are in flight in all; the clock starts once every connection is open.

    Returns the keyword arguments of :class:`Run` that the load measured.
    """
    clients, procs = args.clients, args.procs
    ctx = mp.get_context("fork")
    ready, out, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    path = ROUTES[route]
    children = []
    for p in range(procs):
        share = bodies[p::procs]
        concurrency = clients // procs + (1 if p < clients % procs else 0)
        spec = LoadSpec(
            server.port,
            path,
            server.key,
            share,
            max(1, concurrency),
            args.duration,
            server.proc.pid,
            server.workers,
            args.rate / args.batch / procs,
        )
        children.append(ctx.Process(target=_client_process, args=(spec, ready, start, out), daemon=True))
    for child in children:
        child.start()
    for _ in children:
        ready.get(timeout=60)
    cpu_before, busy_before = group_cpu_s(server.proc.pid), machine_busy_s()
    start.set()
    results: list[ClientResult] = [out.get(timeout=600) for _ in children]
    cpu_after, busy_after = group_cpu_s(server.proc.pid), machine_busy_s()
    per_process = sorted((cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after), reverse=True)
    for child in children:
        child.join(timeout=30)
    statuses: Counter[int] = Counter()
    for r in results:
        statuses.update(r.statuses)
    return {
        "requests": sum(statuses.values()),
        "elapsed": max(r.ended for r in results) - min(r.started for r in results),
        "latencies": [x for r in results for x in r.latencies],
        "statuses": statuses,
        "accepted": sum(r.accepted for r in results),
        "server_cpu": sum(per_process),
        "server_cpu_split": per_process,
        "client_cpu": sum(r.cpu_s for r in results),
        "machine_cpu": busy_after - busy_before,
        "error_samples": [s for r in results for s in r.error_samples][:5],
    }


def warm_up(server: Server, route: str, batch: int, n: int) -> int:
    """A few uncounted requests (first commit, imports, connection setup); returns events accepted."""
    accepted = 0
    with httpx.Client(timeout=60, headers={"X-Write-Key": server.key, "Content-Type": "application/json"}) as client:
        for i in range(n):
            response = client.post(f"{server.url}{ROUTES[route]}", content=BODY[route](f"warm{i}", batch))
            if response.is_success:
                accepted += int(response.json().get("accepted", 0))
    return accepted


def run_noop(workers: int, routes: list[str], bodies: dict[str, list[bytes]], args: argparse.Namespace) -> list[Run]:
    """Measure the no-op server on each route (one server for both)."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_noop(Env(Path(tmp)), workers)
        try:
            for route in routes:
                warm_up(server, route, args.batch, 2 * workers)
                runs.append(Run("noop", route, workers, **load(server, route, bodies[route], args)))
        finally:
            server.stop()
    return runs


def commit_seconds(server: Server) -> tuple[float, int]:
    """Sum and count of the node's group-commit durations (``eventlake_group_commit_seconds``): the
    API runs with ``PROMETHEUS_MULTIPROC_DIR``, as under ``make up``, so one ``/metrics`` answer
    covers every worker and the node's committer process."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("eventlake_group_commit_seconds_")
    )
    if "eventlake_group_commit_seconds_count" not in values:  # metric renamed: no commit ms column
        return 0.0, 0
    return float(values["eventlake_group_commit_seconds_sum"]), int(
        float(values["eventlake_group_commit_seconds_count"])
    )


def run_eventlake(workers: int, route: str, bodies: list[bytes], args: argparse.Namespace) -> Run:
    """Measure the real API on ``route`` with a fresh data folder, then check bronze against the answers."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        metrics_dir = Path(tmp) / "prometheus"
        metrics_dir.mkdir()
        overrides = {
            "EVENTLAKE_RATE_LIMIT": "10000000/second",
            "EVENTLAKE_FLUSH_INTERVAL_MS": str(args.flush_ms),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        api = start_api(env, overrides, workers=workers)
        server = Server(api.url, int(api.url.rsplit(":", 1)[1]), api.proc, api.log, workers, api.key)
        try:
            warm = warm_up(server, route, args.batch, 2 * workers)
            m = load(server, route, bodies, args)
            commit_s, commit_n = commit_seconds(server)
        finally:
            server.stop()
        run = Run("eventlake", route, workers, **m)
        rows = pl.read_delta(env.lake.uri(RAW_EVENTS)).height
        expected = warm + run.accepted
        run.verified = "ok" if rows == expected else f"BAD {rows}!={expected}"
        if run.accepted != run.statuses_2xx * args.batch:  # some events were rejected by index
            run.verified += f" (accepted {run.accepted} of {run.statuses_2xx * args.batch})"
        run.commits = env.lake.version(RAW_EVENTS)
        run.commit_ms = commit_s / commit_n * 1000 if commit_n else None
        report_log(run, api.log)
    return run


LOG_TROUBLE = re.compile(
    r'"level": "(warning|error|critical)"|^(WARNING|ERROR|CRITICAL):|Traceback|"status": [45]\d\d|HTTP/1.1" [45]\d\d '
)


def report_log(run: Run, log: Path) -> None:
    """Print the client's errors and the server log's warnings, errors and 4xx/5xx lines, if there are any."""
    lines = log.read_text(errors="replace").splitlines()
    trouble = [line for line in lines if LOG_TROUBLE.search(line)]
    if not run.errors and not trouble and run.verified == "ok":
        return
    print(f"\n!! {run.target} {ROUTES[run.route]} workers={run.workers}: statuses {dict(run.statuses)}, {run.verified}")
    for sample in run.error_samples:
        print(f"   client saw {sample}")
    print(f"   server log {log.name}: {len(lines)} lines, {len(trouble)} warnings/errors/4xx/5xx; first ones:")
    for line in trouble[:15]:
        print(f"   | {line[:300]}")


# ---------------------------------------------------------------- table


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    """One row per run; 'x noop' is events/s over the no-op server's on the same route and worker count."""
    if args.rate:
        print(
            f"open loop: {args.rate:.0f} events/s sent on a fixed schedule for {args.duration:.0f} s, {args.batch} "
            f"events per request, over at most {args.clients} connections from {args.procs} client processes; "
            "latency from each request's planned start"
        )
    else:
        print(
            f"{args.events} pre-built events (sent at least once, and again for at least {args.duration:.0f} s per "
            f"run), {args.batch} events per request, {args.clients} requests in flight from {args.procs} client "
            "processes"
        )
    print(
        f"{os.cpu_count()} cores shared by the client processes and the server; "
        f"flush interval {args.flush_ms} ms; rate limit lifted"
    )
    print(
        "srv/cli/other = cores used (CPU s per s of run) by the server's processes, the client processes and "
        "anything else; srv us/ev = server CPU per event; per process = cores of each server process "
        "using at least 0.01 (the workers, and with several the node's committer; the master is idle)"
    )
    print(
        "commits = bronze Delta versions written (warm-up included); commit ms = mean group commit (Arrow table + "
        "Delta append) from /metrics; verified = bronze rows == events acknowledged"
    )
    print(
        f"{'target':<24} {'wk':>2} {'events/s':>9} {'req/s':>7} {'x noop':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'srv':>5} {'cli':>5} {'other':>5} {'srv us/ev':>9} "
        f"{'per process':>11} {'commits':>7} {'commit ms':>9} {'verified':>8}"
    )
    noop = {(r.route, r.workers): r.accepted / r.elapsed for r in runs if r.target == "noop"}
    for r in runs:
        eps = r.accepted / r.elapsed
        ratio = eps / noop[(r.route, r.workers)] if (r.route, r.workers) in noop else float("nan")
        other = max(0.0, r.machine_cpu - r.server_cpu - r.client_cpu)
        us_per_event = r.server_cpu / r.accepted * 1e6 if r.accepted else float("nan")
        commits = "-" if r.commits is None else str(r.commits)
        commit_ms = "-" if r.commit_ms is None else f"{r.commit_ms:.1f}"
        split = "/".join(f"{cpu / r.elapsed:.2f}" for cpu in r.server_cpu_split if cpu / r.elapsed >= 0.01)
        print(
            f"{r.target + ' ' + ROUTES[r.route]:<24} {r.workers:>2} {eps:>9.0f} {r.requests / r.elapsed:>7.1f} "
            f"{ratio:>6.2f} {r.pct_ms(0.50):>7.1f} {r.pct_ms(0.95):>7.1f} {r.pct_ms(0.99):>7.1f} {r.errors:>6} "
            f"{r.server_cpu / r.elapsed:>5.2f} {r.client_cpu / r.elapsed:>5.2f} {other / r.elapsed:>5.2f} "
            f"{us_per_event:>9.1f} {split:>11} {commits:>7} {commit_ms:>9} {r.verified:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="distinct events to pre-build")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--clients", type=int, default=64, help="requests in flight, over all client processes")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--duration", type=float, default=10.0, help="least seconds per run (bodies are re-sent)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts")
    parser.add_argument("--routes", nargs="+", choices=sorted(ROUTES), default=["native", "segment"])
    parser.add_argument("--flush-ms", type=int, default=50, help="EVENTLAKE_FLUSH_INTERVAL_MS of the real API")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: events/s to send on a fixed schedule for --duration s, over at most --clients connections "
        "(latency counted from each request's planned start); 0 (default): closed loop",
    )
    args = parser.parse_args()

    n_requests = max(1, args.events // args.batch)
    args.events = n_requests * args.batch
    bodies = {route: [BODY[route](f"b{i}", args.batch) for i in range(n_requests)] for route in args.routes}
    began = time.monotonic()
    runs: list[Run] = []
    for workers in args.workers:
        runs += run_noop(workers, args.routes, bodies, args)
        for route in args.routes:
            runs.append(run_eventlake(workers, route, bodies[route], args))
            print(f"... {route} workers={workers} done ({time.monotonic() - began:.0f} s)", file=sys.stderr)
    order = {
        (target, route): 2 * i + (target == "eventlake")
        for i, route in enumerate(ROUTES)
        for target in ("noop", "eventlake")
    }
    runs.sort(key=lambda r: (r.workers, order[(r.target, r.route)]))
    print(f"\n# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.monotonic() - began:.0f} s in all")
    print_table(runs, args)


if __name__ == "__main__":
    main()
