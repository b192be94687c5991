"""The rescrub of an existing silver table: rows per second rewritten, the purge, peak memory.

Writes ``--days`` event days × ``--commits`` appends per day of ``--rows`` synthetic silver rows
(the shape of ``bench/bench_stats_pruning.py``; every location holds a full client IP, as silver
did before the ``ip_address`` rule) to a temporary lake with statistics on every column, as an older
release wrote it; then runs :func:`pipelines.rescrub.rescrub` with today's rules (every partition
is rewritten, one commit each, the silver suite checking the rewritten rows), times it, runs it a
second time (nothing left to change: the cost of reading and comparing alone), then
:func:`warehouse.lake.maintenance.purge_history` on the table. Prints seconds, rows per second and the
process's peak resident memory. Usage: ``.venv/bin/python bench/bench_rescrub.py [--days 60]
[--commits 10] [--rows 1000]``
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench_stats_pruning import rows

from pipelines.pseudonyms import Pseudonymizer
from pipelines.rescrub import rescrub
from pipelines.scrubbing import Scrubber
from pipelines.silver import Rules
from pipelines.validation import load_suite, suite_path
from warehouse.lake.maintenance import purge_history
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    total = args.days * args.commits * args.rows
    with tempfile.TemporaryDirectory(prefix="bench-rescrub-") as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        old = dataclasses.replace(EVENTS, stats_columns=())  # same path: silver as an older release left it
        lake.ensure(old)
        rng = random.Random(7)
        for offset in range(args.days):
            for commit in range(args.commits):
                batch = rows(date(2024, 1, 1) + timedelta(days=offset), commit, args.rows, rng)
                lake.append(
                    old,
                    batch.set_column(
                        batch.schema.get_field_index("location"),
                        "location",
                        [
                            [
                                f'{{"city":"Berlin","ip":"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"}}'
                                for _ in range(args.rows)
                            ]
                        ],
                    ),
                )
        scrubber = Scrubber()
        rules = Rules(
            load_suite(suite_path(RAW_EVENTS.name)),
            scrubber,
            Pseudonymizer(b"bench", scrubber),
            load_suite(suite_path(EVENTS.name)),
        )
        print(
            f"{args.days} days x {args.commits} commits x {args.rows} rows = {total} silver rows, "
            "every location a full IP"
        )
        print(f"{'step':28} {'seconds':>8} {'rows/s':>10} {'partitions rewritten':>21}")
        for step in ("rescrub (rewrites)", "rescrub again (no change)"):
            started = time.perf_counter()
            stats = rescrub(lake, rules)
            seconds = time.perf_counter() - started
            print(f"{step:28} {seconds:8.1f} {total / seconds:10.0f} {stats.replaced_days:21d}")
        started = time.perf_counter()
        files, logs = purge_history(lake, EVENTS)
        print(
            f"{'purge_history':28} {time.perf_counter() - started:8.1f} {'':>10} {'':>21}   "
            f"({files} files, {logs} log files removed)"
        )
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
