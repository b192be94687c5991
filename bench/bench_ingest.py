"""Ingest throughput and latency of POST /v1/events under group commit, side by side.

Starts the real API (uvicorn, one worker) per configuration on a loopback port, sends the same
load from concurrent clients and prints one table row per configuration, with ratios against the
first. Usage: .venv/bin/python bench/bench_ingest.py [--events 100000] [--batch 100] [--clients 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import Env, start_api  # noqa: E402
from warehouse.lake.tables import RAW_EVENTS  # noqa: E402


def run(flush_ms: int, events: int, batch: int, clients: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        server = start_api(env, {"EVENTLAKE_FLUSH_INTERVAL_MS": str(flush_ms)})
        try:
            bodies = [
                [
                    {
                        "uuid": f"b{i}-{j}",
                        "timestamp": 1714557600000,
                        "user": f"u{j % 500}",
                        "page": "https://shop.example/p",
                        "events": {"click": {"component": "buy"}},
                    }
                    for j in range(batch)
                ]
                for i in range(events // batch)
            ]
            latencies: list[float] = []
            with httpx.Client(timeout=60, headers=server.auth) as client:

                def send(body: list[dict]) -> None:
                    started = time.perf_counter()
                    assert client.post(f"{server.url}/v1/events", json=body).status_code == 202
                    latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(send, bodies))
                elapsed = time.perf_counter() - started
            commits = env.lake.version(RAW_EVENTS) or 0
        finally:
            server.proc.terminate()
            server.proc.wait(timeout=30)
    latencies.sort()
    return {
        "events_per_s": events / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "commits": commits,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--flush-ms", type=int, nargs="+", default=[200, 50, 10])
    args = parser.parse_args()
    rows = [(ms, run(ms, args.events, args.batch, args.clients)) for ms in args.flush_ms]
    base = rows[0][1]
    print(f"{args.events} events, {args.batch} per request, {args.clients} concurrent clients, 1 worker")
    print(f"{'flush ms':>8} {'events/s':>10} {'x base':>7} {'p50 ms':>8} {'p95 ms':>8} {'commits':>8}")
    for ms, r in rows:
        print(
            f"{ms:>8} {r['events_per_s']:>10.0f} {r['events_per_s'] / base['events_per_s']:>7.2f} "
            f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['commits']:>8.0f}"
        )


if __name__ == "__main__":
    main()
