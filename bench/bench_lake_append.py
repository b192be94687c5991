"""Bronze append cost against the table's history: does a commit get slower as versions pile up?

One bronze table (``raw_events``, its real schema and properties) in a temporary lake is grown by
appends of ``--rows`` rows (default 200, one group commit's worth) to each size of ``--versions``
(default 50, 1,000, 5,000, 20,000), one data file per commit, with auto compaction as the ingest API
runs it (``--auto-compact-files``, default the setting's; 0: off, as bronze was before; a tree
without auto compaction never compacts) and the log expired every 100 versions as the hot path does
after each micro-batch (every consumer caught up, ``--log-retention-minutes``, default the
setting's). At each size, for each tree (``--baseline``, another checkout measured in the
same run, then this one), fresh processes that import the tree's ``Lake`` measure:

* ``open + 1st``: a new process's first append (its ``Lake`` opens, or creates, the table);
* ``append``: the next ``--appends`` appends of one writer (median, p95, max; ms);
* ``2 writers``: the same with two processes appending at once (median over both).

Prints one row per size and tree and the ratio of each size's median to the smallest size's (the
target: the 20,000-version median within 1.3x of the 50-version one). Usage:
``.venv/bin/python bench/bench_lake_append.py [--baseline ../eventlake-old] [--versions 50,1000,5000,20000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bronze_rows(count: int) -> object:
    """``count`` bronze rows of page views by 50 users on 20 pages (one request's explode), as an
    Arrow table; :func:`fresh` gives each append its own event ids and receive time."""
    import pyarrow as pa

    from warehouse.contract.native import explode_payload
    from warehouse.contract.rows import RequestContext
    from warehouse.lake.tables import RAW_EVENTS

    ctx = RequestContext(received_at=datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    payloads = (
        {
            "uuid": f"bench-{i}",
            "timestamp": f"2024-03-04T10:{i % 60:02d}:{i * 7 % 60:02d}Z",
            "user": f"user-{i % 50}",
            "page": f"https://shop.example.com/products/{i % 20}?ref=bench",
            "events": {"page_view": {}},
        }
        for i in range(count)
    )
    return pa.Table.from_pylist(
        [row for payload in payloads for row in explode_payload(payload, ctx)], schema=RAW_EVENTS.schema
    )


def fresh(table: Any) -> Any:
    """``table`` with new event ids (uuid4) and ``received_at`` now: every append's rows are its own
    (identical appends compress into a compacted file that never grows, which hides compaction's cost)."""
    import pyarrow as pa

    ids = pa.array([str(uuid.uuid4()) for _ in range(table.num_rows)], pa.string())
    now = pa.array([datetime.now(UTC)] * table.num_rows, table.schema.field("received_at").type)
    table = table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)
    return table.set_column(table.schema.get_field_index("received_at"), "received_at", now)


def open_lake(lake_root: str, files: int, mb: int) -> Any:
    """The tree's ``Lake`` over ``lake_root``, with auto compaction (``files``, ``mb``) when the tree has it."""
    from warehouse.lake.store import Lake

    try:
        from warehouse.lake.maintenance import auto_compactor
    except ImportError:  # a tree before auto compaction
        return Lake(lake_root)
    return Lake(lake_root, compactor=auto_compactor(files, mb))


def worker(lake_root: str, appends: int, rows: int, files: int, mb: int) -> None:
    """Measure in this process (the tree is first on ``sys.path``): print JSON ``{"open", "appends"}`` (s)."""
    from warehouse.lake.tables import RAW_EVENTS

    table = bronze_rows(rows)
    started = time.perf_counter()
    lake = open_lake(lake_root, files, mb)
    lake.append(RAW_EVENTS, fresh(table))
    opened = time.perf_counter() - started
    times = []
    for _ in range(appends):
        batch = fresh(table)
        started = time.perf_counter()
        lake.append(RAW_EVENTS, batch)
        times.append(time.perf_counter() - started)
    print(json.dumps({"open": opened, "appends": times}))


def run_workers(tree: Path, lake_root: str, args: argparse.Namespace, count: int) -> list[dict[str, object]]:
    """``count`` worker processes of ``tree`` at once; their JSON results."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        lake_root,
        *(str(v) for v in (args.appends, args.rows, args.auto_compact_files, args.auto_compact_mb)),
    ]
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        if proc.returncode:
            raise SystemExit(f"worker of {tree} failed with {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout of the repo, measured side by side")
    parser.add_argument("--versions", default="50,1000,5000,20000", help="table sizes in versions, comma-separated")
    parser.add_argument("--appends", type=int, default=40, help="timed appends per process and size")
    parser.add_argument("--rows", type=int, default=200, help="rows per append")
    parser.add_argument("--auto-compact-files", type=int, help="auto compaction's trigger (default: the setting's)")
    parser.add_argument("--auto-compact-mb", type=int, help="auto compaction's file size (default: the setting's)")
    parser.add_argument("--log-retention-minutes", type=float, help="log expiry while growing (default: the setting's)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], *(int(v) for v in args.worker[1:]))
        return
    sys.path.insert(0, str(ROOT))
    from warehouse.lake.maintenance import expire_log
    from warehouse.lake.tables import RAW_EVENTS
    from warehouse.settings import Settings

    defaults = Settings.model_fields
    if args.auto_compact_files is None:
        args.auto_compact_files = defaults["auto_compact_files"].default
    if args.auto_compact_mb is None:
        args.auto_compact_mb = defaults["auto_compact_mb"].default
    if args.log_retention_minutes is None:
        args.log_retention_minutes = defaults["log_retention_minutes"].default
    retention = timedelta(minutes=args.log_retention_minutes)

    trees = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this", ROOT)]
    sizes = sorted(int(v) for v in args.versions.split(","))
    table = bronze_rows(args.rows)
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench_lake_append_") as tmp:
        lake = open_lake(f"{tmp}/lake", args.auto_compact_files, args.auto_compact_mb)
        for size in sizes:
            grow_started = time.perf_counter()
            while (version := lake.version(RAW_EVENTS) or 0) < size:
                lake.append(RAW_EVENTS, fresh(table))
                if version % 100 == 0:
                    expire_log(lake, RAW_EVENTS, version, retention)
            if lake.compactor is not None:
                lake.compactor.wait()
            grown = time.perf_counter() - grow_started
            files = len(lake.open(RAW_EVENTS).file_uris())
            logs = len(list((Path(lake.uri(RAW_EVENTS)) / "_delta_log").iterdir()))
            sys.stderr.write(f"grown to {version} versions ({files} data files, {logs} log files) in {grown:.0f} s\n")
            for label, tree in trees:
                at = lake.version(RAW_EVENTS) or 0
                one = run_workers(tree, lake.root, args, 1)[0]
                two = run_workers(tree, lake.root, args, 2)
                both = [t for result in two for t in result["appends"]]  # type: ignore[attr-defined]
                appends: list[float] = one["appends"]  # type: ignore[assignment]
                stats = {
                    "open": 1000 * float(one["open"]),  # type: ignore[arg-type]
                    "p50": ms(appends, 0.5),
                    "p95": ms(appends, 0.95),
                    "max": ms(appends, 1.0),
                    "two_p50": ms(both, 0.5),
                }
                rows.append((label, at, stats))
                sys.stderr.write(f"{label} at {at}: {stats}\n")
    header = ["tree", "versions", "open + 1st ms", "append p50 ms", "p95", "max", "2 writers p50", "p50 / smallest"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for label, at, stats in rows:
        smallest = next(s for lbl, _, s in rows if lbl == label)
        cells = [stats["open"], stats["p50"], stats["p95"], stats["max"], stats["two_p50"]]
        ratio = stats["p50"] / smallest["p50"]
        print(" | ".join([label, f"{at:,}", *(f"{c:.0f}" for c in cells), f"{ratio:.2f}x"]))


if __name__ == "__main__":
    main()
