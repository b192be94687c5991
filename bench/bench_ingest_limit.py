"""Ingest API throughput against the framework's own limit (a no-op FastAPI app), side by side.

For each uvicorn worker count, starts ``bench/noop_app.py`` (reads and orjson-parses the body,
stores nothing, answers at once) and the real API (``tests.conftest.start_api``, a fresh data
folder per run, rate limit lifted), then sends the same pre-built request bodies to:

- ``noop /v1/events`` and ``eventlake /v1/events`` (native payloads, ``--batch`` per request),
- ``noop /v1/batch`` and ``eventlake /v1/batch`` (Segment track messages, ``--batch`` per request),

and prints events/s, requests/s, p50/p95/p99 latency, non-2xx/transport errors, the CPU the
server and the clients used (in cores), and events/s as a ratio of the no-op server on the same
route and worker count. After each eventlake run the server is stopped and bronze is read back:
its row count must equal the events the API acknowledged (``verified``).

The load comes from ``--procs`` client processes (not threads: one GIL would be the limit), each
keeping ``--clients / --procs`` requests in flight on keep-alive connections with a minimal
asyncio HTTP/1.1 client (pre-encoded requests, so the client spends as little CPU as possible;
there is no wrk/hey/ab here). Client and server share the machine's cores, which the output
states; compare the ratios within one run rather than absolute numbers.

Usage: .venv/bin/python bench/bench_ingest_limit.py [--events 100000] [--batch 100] [--clients 32]
       [--procs 2] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import Env, free_port, start_api  # noqa: E402
from warehouse.tables import RAW_EVENTS  # noqa: E402

ROUTES = {"native": "/v1/events", "segment": "/v1/batch"}
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


BODY = {"native": native_body, "segment": segment_body}


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


async def _client_main(
    port: int, path: str, key: str, bodies: list[bytes], concurrency: int, duration: float, ready: Any, start: Any
) -> ClientResult:
    result = ClientResult()
    requests = [_request(port, path, key, body) for body in bodies]
    healthz = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    next_index = 0

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(healthz)  # establish the keep-alive connection before the clock starts
        await _read_response(reader)
        return reader, writer

    connections = [await connect() for _ in range(concurrency)]
    ready.put(os.getpid())
    await asyncio.get_running_loop().run_in_executor(None, start.wait)

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        nonlocal next_index
        reader, writer = conn
        # every body once, then round again until the duration is over
        while next_index < len(requests) or time.monotonic() < deadline:
            request = requests[next_index % len(requests)]
            next_index += 1
            sent = time.perf_counter()
            try:
                writer.write(request)
                status, body, keep_alive = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.statuses[0] += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"transport: {exc!r}")
                writer.close()
                reader, writer = await connect()
                continue
            result.latencies.append(time.perf_counter() - sent)
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.accepted += int(orjson.loads(body).get("accepted", 0))
            elif len(result.error_samples) < 5:
                result.error_samples.append(f"{status}: {body[:300].decode(errors='replace')}")
            if not keep_alive:
                writer.close()
                reader, writer = await connect()
        writer.close()

    cpu = os.times()
    result.started = time.monotonic()
    deadline = result.started + duration
    await asyncio.gather(*(worker(conn) for conn in connections))
    result.ended = time.monotonic()
    after = os.times()
    result.cpu_s = (after.user - cpu.user) + (after.system - cpu.system)
    return result


def _client_process(
    port: int,
    path: str,
    key: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    ready: Any,
    start: Any,
    out: Any,
) -> None:
    out.put(asyncio.run(_client_main(port, path, key, bodies, concurrency, duration, ready, start)))


# ---------------------------------------------------------------- servers and CPU accounting


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (uvicorn + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after "(comm)": state, ppid, pgrp, ...; utime, stime at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


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
    key: str = "none"

    def stop(self) -> None:
        """Terminate uvicorn (which flushes the real API's buffer) and wait for it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def start_noop(workers: int, log: Path) -> Server:
    """Serve ``bench/noop_app.py`` with uvicorn exactly like the real API, and wait for /healthz."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "noop_app:app", "--app-dir", str(ROOT / "bench")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"no-op uvicorn exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, port, proc, log)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"no-op uvicorn did not start: {log.read_text()}")


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
    client_cpu: float
    machine_cpu: float
    error_samples: list[str]
    verified: str = "-"
    commits: int | None = None

    @property
    def errors(self) -> int:
        """Non-2xx answers plus transport errors."""
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def pct_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0..1) in ms, nearest rank."""
        ordered = sorted(self.latencies)
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
        child_args = (server.port, path, server.key, share, max(1, concurrency), args.duration, ready, start, out)
        children.append(ctx.Process(target=_client_process, args=child_args, daemon=True))
    for child in children:
        child.start()
    for _ in children:
        ready.get(timeout=60)
    cpu_before, busy_before = group_cpu_s(server.proc.pid), machine_busy_s()
    start.set()
    results: list[ClientResult] = [out.get(timeout=600) for _ in children]
    cpu_after, busy_after = group_cpu_s(server.proc.pid), machine_busy_s()
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
        "server_cpu": cpu_after - cpu_before,
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
        server = start_noop(workers, Path(tmp) / "noop.log")
        try:
            for route in routes:
                warm_up(server, route, args.batch, 2 * workers)
                runs.append(Run("noop", route, workers, **load(server, route, bodies[route], args)))
        finally:
            server.stop()
    return runs


def run_eventlake(workers: int, route: str, bodies: list[bytes], args: argparse.Namespace) -> Run:
    """Measure the real API on ``route`` with a fresh data folder, then check bronze against the answers."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        api = start_api(env, {"EVENTLAKE_RATE_LIMIT": "10000000/second"}, workers=workers)
        server = Server(api.url, int(api.url.rsplit(":", 1)[1]), api.proc, api.log, api.key)
        try:
            warm = warm_up(server, route, args.batch, 2 * workers)
            m = load(server, route, bodies, args)
        finally:
            server.stop()
        run = Run("eventlake", route, workers, **m)
        rows = pl.read_delta(env.lake.uri(RAW_EVENTS)).height
        expected = warm + run.accepted
        run.verified = "ok" if rows == expected else f"BAD {rows}!={expected}"
        run.commits = env.lake.version(RAW_EVENTS)
        if run.errors or rows != expected:
            report_log(run, api.log)
    return run


def report_log(run: Run, log: Path) -> None:
    """Print the statuses, sample error bodies and the server log's warnings/errors for a run that failed."""
    print(f"\n!! {run.target} {ROUTES[run.route]} workers={run.workers}: statuses {dict(run.statuses)}")
    for sample in run.error_samples:
        print(f"   client saw {sample}")
    lines = log.read_text(errors="replace").splitlines()
    interesting = [line for line in lines if re.search(r"ERROR|WARNING|Traceback|buffer_full|commit_failed|429", line)]
    print(f"   server log {log.name}: {len(lines)} lines, {len(interesting)} warnings/errors; first ones:")
    for line in interesting[:15]:
        print(f"   | {line[:300]}")


# ---------------------------------------------------------------- table


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    """One row per run; 'x noop' is events/s over the no-op server's on the same route and worker count."""
    print(
        f"{args.events} pre-built events (sent at least once, and again for at least {args.duration:.0f} s per run), "
        f"{args.batch} events per request, {args.clients} requests in flight from {args.procs} client processes"
    )
    print(
        f"{os.cpu_count()} cores shared by the client processes and the server; "
        f"flush interval {os.environ.get('EVENTLAKE_FLUSH_INTERVAL_MS', '50')} ms; rate limit lifted"
    )
    print(
        "srv/cli/other = cores used (CPU s per s of run) by the server's processes, the client processes and "
        "anything else; srv us/ev = server CPU per event"
    )
    print(
        f"{'target':<24} {'wk':>2} {'events/s':>9} {'req/s':>7} {'x noop':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'srv':>5} {'cli':>5} {'other':>5} {'srv us/ev':>9} "
        f"{'commits':>7} {'verified':>8}"
    )
    noop = {(r.route, r.workers): r.accepted / r.elapsed for r in runs if r.target == "noop"}
    for r in runs:
        eps = r.accepted / r.elapsed
        ratio = eps / noop[(r.route, r.workers)] if (r.route, r.workers) in noop else float("nan")
        other = max(0.0, r.machine_cpu - r.server_cpu - r.client_cpu)
        us_per_event = r.server_cpu / r.accepted * 1e6 if r.accepted else float("nan")
        commits = "-" if r.commits is None else str(r.commits)
        print(
            f"{r.target + ' ' + ROUTES[r.route]:<24} {r.workers:>2} {eps:>9.0f} {r.requests / r.elapsed:>7.1f} "
            f"{ratio:>6.2f} {r.pct_ms(0.50):>7.1f} {r.pct_ms(0.95):>7.1f} {r.pct_ms(0.99):>7.1f} {r.errors:>6} "
            f"{r.server_cpu / r.elapsed:>5.2f} {r.client_cpu / r.elapsed:>5.2f} {other / r.elapsed:>5.2f} "
            f"{us_per_event:>9.1f} {commits:>7} {r.verified:>8}"
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
    order = {("noop", "native"): 0, ("eventlake", "native"): 1, ("noop", "segment"): 2, ("eventlake", "segment"): 3}
    runs.sort(key=lambda r: (r.workers, order[(r.target, r.route)]))
    print(f"\n# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.monotonic() - began:.0f} s in all")
    print_table(runs, args)


if __name__ == "__main__":
    main()
