"""Ingest scale-out: 1, 2 and 4 ingest nodes behind a real load balancer, on local disk and on S3.

Each node is its own uvicorn master (``--workers-per-node`` workers; with more than one, the node's
committer makes its commits), so N nodes are N separate Delta writers appending to one bronze
table. HAProxy (``scripts/balancer.py``) spreads the connections round robin. The lake is a fresh
folder (``local``) or a fresh bucket on a file-backed single-node Ceph RGW (``s3``:
``scripts/s3_server.py``, bluestore on this machine's disk, so both stores write the same disk).

The load is ``bench/bench_ingest_limit.py``'s client (``--procs`` processes, ``--clients``
requests of ``--batch`` native events in flight, closed loop, ``--duration`` s) sent to the
balancer. Per run it prints events/s acknowledged, p50/p99 latency, errors, bronze commits per
second, the commit-conflict retries delta-rs made (``operationMetrics.num_retries`` of every commit
in the log: a retry is a commit that found its version taken by another writer and was rebased on
it), the mean commit duration seen by the writers, and ``verified``: bronze's row count equals the
events acknowledged (warm-up included).

Everything shares this machine's 2 cores (nodes, balancer, S3 server, clients): more nodes do not
add CPU here, so read the table for what the shared log costs (commits/s, retries, latency), not
for a speed-up.

Usage: .venv/bin/python bench/bench_scale_out.py [--nodes 1 2 4] [--stores local s3] [--duration 10]
       [--clients 64] [--batch 100] [--events 20000] [--procs 2] [--workers-per-node 1] [--flush-ms 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import balancer  # noqa: E402
import s3_server  # noqa: E402
from bench_ingest_limit import Run, Server, load, native_body, warm_up  # noqa: E402

from tests.conftest import Env, free_port, start_api  # noqa: E402
from warehouse.lake.tables import RAW_EVENTS  # noqa: E402


@dataclass
class Commits:
    """What bronze's log says about the run's commits."""

    count: int
    retries: int
    commit_ms: float | None


def commits_of(uri: str, options: dict[str, str] | None, after: int) -> Commits:
    """The WRITE commits after version ``after``: how many, their conflict retries, mean duration (ms)."""
    table = DeltaTable(uri, storage_options=options)
    writes = [
        entry
        for entry in table.history()
        if entry.get("operation") == "WRITE" and int(entry.get("version", -1)) > after
    ]
    retries = sum(int(entry.get("operationMetrics", {}).get("num_retries", 0)) for entry in writes)
    times = [entry.get("operationMetrics", {}).get("execution_time_ms") for entry in writes]
    known = [float(t) for t in times if t is not None]
    return Commits(len(writes), retries, sum(known) / len(known) if known else None)


def run_nodes(nodes: int, store: str, s3: Any, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """One measured run with ``nodes`` nodes on ``store``; the row of the table."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        overrides = {"EVENTLAKE_RATE_LIMIT": "10000000/second", "EVENTLAKE_FLUSH_INTERVAL_MS": str(args.flush_ms)}
        options = None
        if store == "s3":
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            s3.create_bucket(bucket)
            options = s3.storage_options
            overrides |= s3.settings(f"s3://{bucket}/lake", f"s3://{bucket}/cold")
        ports = [free_port() for _ in range(nodes)]
        apis = [start_api(env, overrides, workers=args.workers_per_node, port=port) for port in ports]
        front = balancer.start(Path(tmp) / "haproxy", free_port(), [f"127.0.0.1:{port}" for port in ports])
        server = Server(front.url, int(front.url.rsplit(":", 1)[1]), front.proc, front.log, 1, apis[0].key)
        uri = f"{overrides.get('EVENTLAKE_LAKE_URI', env.lake_root)}/{RAW_EVENTS.path}"
        try:
            warm = warm_up(server, "native", args.batch, 4 * nodes)
            before = DeltaTable(uri, storage_options=options).version()
            measured = load(server, "native", bodies, args)
        finally:
            for api in apis:
                api.proc.terminate()
            for api in apis:
                api.proc.wait(timeout=60)
            front.stop()
        run = Run("eventlake", "native", nodes, **measured)
        rows = pl.from_arrow(DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=["event_id"])).height
        expected = warm + run.accepted
        commits = commits_of(uri, options, before)
    return {
        "store": store,
        "nodes": nodes,
        "flush ms": args.flush_ms,
        "events/s": run.accepted / run.elapsed,
        "p50 ms": run.pct_ms(0.5),
        "p99 ms": run.pct_ms(0.99),
        "errors": run.errors,
        "commits/s": commits.count / run.elapsed,
        "conflict retries": commits.retries,
        "retries/commit": commits.retries / commits.count if commits.count else 0.0,
        "commit ms": commits.commit_ms,
        "machine cores": run.machine_cpu / run.elapsed,
        "verified": "ok" if rows == expected else f"BAD {rows}!={expected}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--stores", nargs="+", choices=["local", "s3"], default=["local", "s3"])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--workers-per-node", type=int, default=1)
    parser.add_argument("--flush-ms", type=int, default=50, help="each node's group-commit interval (ms)")
    args = parser.parse_args()
    args.rate = 0.0  # closed loop (bench_ingest_limit's load reads it)
    bodies = [native_body(f"b{i}", args.batch) for i in range(max(1, args.events // args.batch))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s3 = s3_server.start(Path(tmp) / "rgw", persistent=True, size_mb=8192) if "s3" in args.stores else None
        try:
            for store in args.stores:
                for nodes in args.nodes:
                    rows.append(run_nodes(nodes, store, s3, bodies, args))
                    print(json.dumps(rows[-1], default=str), file=sys.stderr, flush=True)
        finally:
            if s3 is not None:
                s3.stop()
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{v:,.1f}" if isinstance(v, float) else str(v) for v in (row[c] for c in columns)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
