"""Silver's memory on a bronze backlog: one micro-batch for all of it against bounded micro-batches.

Writes ``--events`` synthetic bronze events (bench/silver_step.py's generator) in commits of
``--commit-rows`` (the ingest API's largest group commit, ``EVENTLAKE_FLUSH_MAX_ROWS``, 20k by default;
at low rates commits are far smaller and a micro-batch spans more of them),
as a backlog left while the pipeline was down. Then, for each ``--max-batch-rows`` value, a fresh
process runs ``pipelines.silver.ingest`` into its own silver table until silver's watermark
reaches bronze's version, and reports the micro-batches it took, the seconds, and the peak
resident memory of the process and of its largest worker process (``ru_maxrss``; the
pipeline's worker settings, by default one process per core). Usage:
``.venv/bin/python bench/bench_silver_backlog.py [--events 1000000] [--max-batch-rows 1000000 250000]``
"""

import sys
from pathlib import Path

# Heavy imports stay inside functions: the silver step's worker processes re-import this script.


def drain(lake_root: str, silver_suffix: str, max_rows: int) -> str:
    """Run silver ingest until caught up (in this process); returns a table row."""
    import resource
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
    parallel = Parallelism(settings.silver_workers, settings.silver_parallel_min_rows)
    rules = silver.Rules(
        load_suite(suite_path("raw_events")),
        scrubber,
        Pseudonymizer(b"bench-key", scrubber),
        load_suite(suite_path("events")),
        parallel,
    )
    target = lake.version(RAW_EVENTS)
    runs = rows = 0
    started = time.perf_counter()
    while lake.watermark(EVENTS.name, RAW_EVENTS.name) < target:
        rows += silver.ingest(lake, rules, f"bench-{runs}", max_rows).rows
        runs += 1
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"| {max_rows:,} | {runs} | {rows:,} | {seconds:.0f} | {own:,.0f} | {workers:,.0f} |"


def main() -> None:
    import argparse
    import os
    import subprocess
    import tempfile

    from silver_step import bronze

    from warehouse.lake.store import Lake
    from warehouse.lake.tables import RAW_EVENTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--commit-rows", type=int, default=20_000)
    parser.add_argument("--max-batch-rows", type=int, nargs="+", default=[1_000_000, 250_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        events = bronze(args.events)
        for start in range(0, events.num_rows, args.commit_rows):
            lake.append(RAW_EVENTS, events.slice(start, args.commit_rows))
        del events
        print(f"backlog: {args.events:,} bronze events in commits of {args.commit_rows:,}\n")
        print("| max batch rows | micro-batches | rows | seconds | peak RSS MiB | largest worker MiB |")
        print("|---|---|---|---|---|---|")
        for n, max_rows in enumerate(args.max_batch_rows):
            # os._exit once the row is out: a C++ runtime at interpreter teardown sometimes aborts
            # ("terminate called without an active exception") after the work is done.
            code = (
                f"import os, bench_silver_backlog as b; print(b.drain({lake.root!r}, 'v{n}', {max_rows}), flush=True); "
                "os._exit(0)"
            )
            here = Path(__file__).resolve()
            env = {**os.environ, "PYTHONPATH": f"{here.parent}:{here.parents[1]}"}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"max batch rows {max_rows}: exit {out.returncode}\n{out.stderr[-3000:]}")
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
