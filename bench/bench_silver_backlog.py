"""Silver on a bronze backlog: one micro-batch for all of it against bounded micro-batches, and the
embedded path against a Ray cluster of 1 and 2 workers.

Writes ``--events`` synthetic bronze events (bench/silver_step.py's generator) in commits of
``--commit-rows`` (the ingest API's largest group commit, ``EVENTLAKE_FLUSH_MAX_ROWS``, 20k by default;
at low rates commits are far smaller and a micro-batch spans more of them),
as a backlog left while the pipeline was down. Then, for each ``--max-batch-rows`` value, a fresh
process runs ``pipelines.silver.ingest`` into its own silver table until silver's watermark
reaches bronze's version, and reports the micro-batches it took, the seconds, and the peak
resident memory of the process (``VmHWM``) and of its largest worker process (sampled every 0.2 s;
the pipeline's worker settings, by default one process per core).

``--ray-nodes 0 1 2`` runs each bound on the embedded path (0) and on a local Ray cluster of that
many one-CPU nodes (``scripts/ray_cluster.py``; silver's per-row stages as Daft UDFs, the driver
as the one writer); there the workers are the cluster's ``ray::`` processes. Usage:
``.venv/bin/python bench/bench_silver_backlog.py [--events 1000000] [--max-batch-rows 1000000 250000]
[--ray-nodes 0 1 2]``
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

# Heavy imports stay inside functions: the silver step's worker processes re-import this script.


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident memory of a live process, MiB: its ``VmHWM``. Not ``ru_maxrss``, which Linux
    carries over ``execve``: a child started from a parent holding the generated backlog reported
    the parent's size (a 10M-event run "peaked" at 21 GB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class WorkerPeaks(threading.Thread):
    """Samples, every 0.2 s until :meth:`stop`, the peak resident memory of this process's child
    processes (the silver step's workers, which live one micro-batch) and of the machine's Ray
    worker processes (``ray::…``); ``largest`` is the largest seen, MiB."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.largest = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._done.wait(0.2):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    ray_worker = (proc / "cmdline").read_bytes().startswith(b"ray::")
                    parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if ray_worker or parent == me:
                        self.largest = max(self.largest, peak_rss_mib(proc.name))
                except (OSError, ValueError, IndexError):
                    continue

    def stop(self) -> float:
        """Stop sampling; returns the largest peak seen, MiB."""
        self._done.set()
        self.join()
        return self.largest


def drain(lake_root: str, silver_suffix: str, max_rows: int, ray_address: str | None = None) -> str:
    """Run silver ingest until caught up (in this process; its per-row stages on the Ray cluster at
    ``ray_address`` when given); returns a table row."""
    import time

    from pipelines import silver
    from pipelines.parallel import Parallelism
    from pipelines.pseudonyms import Pseudonymizer
    from pipelines.scrubbing import Scrubber
    from pipelines.validation import load_suite, suite_path
    from warehouse.lake.store import Lake
    from warehouse.lake.tables import EVENTS, PROPERTY_TYPES, RAW_EVENTS, WATERMARKS, TableDef
    from warehouse.settings import Settings

    class SeparateSilver(Lake):
        """The bench lake with silver, its registry and watermarks kept apart per variant."""

        def uri(self, table: TableDef) -> str:
            own = table.name in (EVENTS.name, PROPERTY_TYPES.name, WATERMARKS.name)
            return f"{super().uri(table)}_{silver_suffix}" if own else super().uri(table)

    lake = SeparateSilver(lake_root)
    scrubber = Scrubber()
    settings = Settings()  # worker processes as the pipeline starts them (default: one per core)
    parallel = Parallelism(settings.silver_workers, settings.silver_parallel_min_rows, ray_address)
    rules = silver.Rules(
        load_suite(suite_path("raw_events")),
        scrubber,
        Pseudonymizer(b"bench-key", scrubber),
        load_suite(suite_path("events")),
        parallel,
    )
    target = lake.version(RAW_EVENTS)
    workers = WorkerPeaks()
    workers.start()
    runs = rows = 0
    started = time.perf_counter()
    while lake.watermark(EVENTS.name, RAW_EVENTS.name) < target:
        rows += silver.ingest(lake, rules, f"bench-{runs}", max_rows).rows
        runs += 1
    seconds = time.perf_counter() - started
    return f"{max_rows:,} | {runs} | {rows:,} | {seconds:.0f} | {peak_rss_mib():,.0f} | {workers.stop():,.0f} |"


def main() -> None:
    import argparse
    import tempfile

    import ray_cluster
    from silver_step import bronze

    from warehouse.lake.store import Lake
    from warehouse.lake.tables import RAW_EVENTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--commit-rows", type=int, default=20_000)
    parser.add_argument("--max-batch-rows", type=int, nargs="+", default=[1_000_000, 250_000])
    parser.add_argument(
        "--ray-nodes", type=int, nargs="+", default=[0], help="0: embedded; n: a Ray cluster of n nodes"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        events = bronze(args.events)
        for start in range(0, events.num_rows, args.commit_rows):
            lake.append(RAW_EVENTS, events.slice(start, args.commit_rows))
        del events
        print(f"backlog: {args.events:,} bronze events in commits of {args.commit_rows:,}\n")
        print("| engine | max batch rows | micro-batches | rows | seconds | peak RSS MiB | largest worker MiB |")
        print("|---|---|---|---|---|---|---|")
        variant = 0
        for nodes in args.ray_nodes:
            cluster = ray_cluster.start(nodes, 6479, 8365, object_store_bytes=2_000_000_000) if nodes else None
            try:
                for max_rows in args.max_batch_rows:
                    address = cluster.address if cluster else None
                    engine = f"Ray, {nodes} worker{'s' * (nodes > 1)}" if nodes else "embedded"
                    print(f"| {engine} | {run(lake.root, f'v{variant}', max_rows, address)}", flush=True)
                    variant += 1
            finally:
                if cluster:
                    cluster.stop()


def run(lake_root: str, suffix: str, max_rows: int, ray_address: str | None) -> str:
    """:func:`drain` in a fresh process; returns its table row."""
    import ray_cluster

    # os._exit once the row is out: a C++ runtime at interpreter teardown sometimes aborts
    # ("terminate called without an active exception") after the work is done.
    code = (
        f"import os, bench_silver_backlog as b; print(b.drain({lake_root!r}, {suffix!r}, {max_rows}, {ray_address!r}), "
        "flush=True); os._exit(0)"
    )
    here = Path(__file__).resolve()
    env = {**os.environ, **ray_cluster.DRIVER_ENV, "PYTHONPATH": f"{here.parent}:{here.parents[1]}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"max batch rows {max_rows}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    main()
