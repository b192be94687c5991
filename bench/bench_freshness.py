"""Event-to-gold latency under steady load, with where the time goes.

Starts the stack as ``make up`` does, but empty and without Superset (``scripts/stack.py serve``,
a temporary data folder, free ports), warms it up with one event, then POSTs ``--rate`` events/s
(default 1,000: a batch of rate/10 native payloads every 100 ms, each event with a known id) for
``--seconds`` (default 120). A poller reads the serving snapshot every 250 ms; an event counts in
gold once every gold mart's watermark in the snapshot covers the bronze version its POST was
acknowledged with (the version that holds it). Latency = that moment − the moment it was sent.

The breakdown per event comes from the Dagster runs that carried it (the instance's run records
and step stats): ``commit`` (POST until the group commit acknowledged it), ``sensor`` (ack until
the run that covers it was created), ``run start`` (until its silver step started: the run queue
and the run's process start), ``compute`` (silver step and gold marts), ``publish`` (the serving
snapshot step) and ``observe`` (until the poller saw it). Prints p50/p95/max and mean per part.
Usage: ``.venv/bin/python bench/bench_freshness.py [--rate 1000] [--seconds 120]``
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from warehouse.marts import catalog  # noqa: E402

RUN_JOB = "ingest_to_gold"


@dataclass
class Batch:
    sent: float  # wall clock, s since epoch
    acked: float = 0.0
    version: int = -1
    visible: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def covered_version(serving: Path) -> int:
    """The bronze version every incremental mart in the served snapshot covers (-1 if none yet)."""
    if not serving.exists():
        return -1
    try:
        con = duckdb.connect(str(serving), read_only=True)
    except duckdb.Error:
        return -1
    try:
        marts = [name for name, mart in catalog().items() if mart.spec.kind == "incremental"]
        row = con.execute(
            "select count(*), min(bronze_version) from gold_watermarks where list_contains(?, mart)", [marts]
        ).fetchone()
    finally:
        con.close()
    return int(row[1]) if row and row[0] == len(marts) else -1


def payloads(count: int, tag: str) -> list[dict[str, object]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "uuid": f"{tag}-{i}-{uuid.uuid4()}",
            "timestamp": now,
            "app": "freshness",
            "user": f"u{i % 500}",
            "page": f"https://bench.example.com/p/{i % 50}",
            "events": {"click": {"component": f"c{i % 20}"}},
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=120, help="how long to keep the load on")
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds to wait for gold afterwards")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench_freshness_"))
    api_port, dagster_port = free_port(), free_port()
    env = {
        **os.environ,
        "EVENTLAKE_DATA_DIR": str(data_dir),
        "EVENTLAKE_SUPERSET": "0",
        "EVENTLAKE_INGEST_PORT": str(api_port),
        "EVENTLAKE_DAGSTER_PORT": str(dagster_port),
    }
    log = (data_dir / "stack.log").open("wb")
    stack = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    api = f"http://127.0.0.1:{api_port}"
    serving = data_dir / "serving" / "serving.duckdb"
    try:
        key_file = data_dir / "local_write_key"
        deadline = time.monotonic() + 300
        while not (key_file.exists() and (data_dir / "logs" / "dagster_daemon.log").exists()):
            if stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not start; see {data_dir / 'stack.log'}")
            time.sleep(0.5)
        client = httpx.Client(base_url=api, headers={"X-Write-Key": key_file.read_text().strip()}, timeout=30)
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        warm = client.post("/v1/events", json=payloads(1, "warm")).json()["bronze_version"]
        print(f"{datetime.now(UTC):%H:%M:%S} stack up; warming up (first run creates the tables)", file=sys.stderr)
        while covered_version(serving) < warm:
            time.sleep(0.5)

        batches: list[Batch] = []
        polls: list[tuple[float, int]] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                polls.append((time.time(), covered_version(serving)))
                time.sleep(0.25)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        def send(batch: Batch, number: int) -> None:
            body = client.post("/v1/events", json=payloads(args.rate // 10, f"b{number}")).json()
            batch.acked, batch.version = time.time(), int(body["bronze_version"])

        print(f"{datetime.now(UTC):%H:%M:%S} load: {args.rate} events/s for {args.seconds:.0f} s", file=sys.stderr)
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            number = 0
            while time.monotonic() - start < args.seconds:
                target = start + number * 0.1
                time.sleep(max(0.0, target - time.monotonic()))
                batch = Batch(sent=time.time())
                batches.append(batch)
                pool.submit(send, batch, number)
                number += 1
        last = max(b.version for b in batches)
        deadline = time.monotonic() + args.drain_timeout
        while covered_version(serving) < last and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(0.5)
        done.set()
        poller.join()
        for batch in batches:
            batch.visible = next((t for t, v in polls if t >= batch.acked and v >= batch.version), float("nan"))
        report(batches, data_dir / "dagster", args)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stack.kill()


def report(batches: list[Batch], dagster_home: Path, args: argparse.Namespace) -> None:
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    runs = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=RUN_JOB)):
        steps = {s.step_key: s for s in instance.get_run_step_stats(record.dagster_run.run_id)}
        silver, serving = steps.get("silver_events"), steps.get("serving_snapshot")
        if silver is None or serving is None or silver.start_time is None or serving.end_time is None:
            continue
        runs.append((record.create_timestamp.timestamp(), silver.start_time, serving.start_time, serving.end_time))
    runs.sort(key=lambda run: run[1])
    parts: dict[str, list[float]] = {k: [] for k in ("commit", "sensor", "run start", "compute", "publish", "observe")}
    totals = []
    missing = 0
    for batch in batches:
        run = next((r for r in runs if r[1] >= batch.acked), None)
        if run is None or batch.visible != batch.visible:  # no covering run, or never seen (NaN)
            missing += 1
            continue
        created, silver_start, serving_start, serving_end = run
        totals.append(batch.visible - batch.sent)
        parts["commit"].append(batch.acked - batch.sent)
        parts["sensor"].append(max(0.0, created - batch.acked))
        parts["run start"].append(silver_start - max(created, batch.acked))
        parts["compute"].append(serving_start - silver_start)
        parts["publish"].append(serving_end - serving_start)
        parts["observe"].append(batch.visible - serving_end)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]

    events = len(batches) * (args.rate // 10)
    print(f"\n{events:,} events at {args.rate:,}/s for {args.seconds:.0f} s; {len(runs)} runs; 2 cores\n")
    print("| event → gold (s) | p50 | p95 | max | mean |")
    print("|---|---|---|---|---|")
    for name, values in {"**total**": totals, **parts}.items():
        print(
            f"| {name} | {pct(values, 50):.1f} | {pct(values, 95):.1f} | {max(values):.1f} |"
            f" {statistics.mean(values):.1f} |"
        )
    if missing:
        print(f"\n{missing} batches were not seen in gold within the drain timeout")


if __name__ == "__main__":
    main()
