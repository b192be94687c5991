"""Pruned reads of silver with Delta statistics on every column (before) and only on the columns
readers prune by (after, ``EVENTS.stats_columns``), side by side on the same rows.

Writes the same synthetic silver rows (``--days`` event days × ``--commits`` appends per day of
``--rows`` rows, text columns with realistic lengths) to two tables that differ only in
``delta.dataSkippingStatsColumns``, then times, alternating the two tables over ``--rounds`` rounds
(medians), the reads the pipeline does:

* ``open``: loading the table's latest snapshot (the log, its statistics included);
* ``days``: a gold mart's read, files pruned to 3 ``event_date`` partitions, rows read;
* ``received``: the data quality mart's read, files pruned by ``received_at`` statistics to one day;
* ``event_id``: the silver step's lookup of 1,000 event ids (``dataset().to_table(filter=isin)``).

Also prints the files each pruned read keeps (the same on both sides: pruning works as before) and
the log's size. Usage: ``.venv/bin/python bench/bench_stats_pruning.py [--days 60] [--commits 10]
[--rows 1000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable

from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, TableDef

FULL = dataclasses.replace(EVENTS, path="before/events", stats_columns=())


def rows(day: date, commit: int, n: int, rng: random.Random) -> pa.Table:
    start = datetime.combine(day, datetime.min.time(), UTC)
    times = [start + timedelta(seconds=rng.randrange(86_400)) for _ in range(n)]
    received = [t + timedelta(days=rng.choice([0, 0, 0, 1]), seconds=5) for t in times]
    columns = {
        "event_id": [f"{rng.getrandbits(128):032x}" for _ in range(n)],
        "event_type": [rng.choice(["page_view", "click", "scroll", "errors"]) for _ in range(n)],
        "app": ["shop"] * n,
        "source": ["web"] * n,
        "source_format": ["native"] * n,
        "timestamp": times,
        "event_date": [day] * n,
        "received_at": received,
        "user_id": [f"user-{rng.randrange(100_000)}" for _ in range(n)],
        "page_url": [f"https://shop.example/p/{rng.randrange(5_000)}?ref=campaign-{commit}" for _ in range(n)],
        "location": [f'{{"city":"City {rng.randrange(500)}","ip":"198.51.{rng.randrange(256)}.0"}}' for _ in range(n)],
        "properties": [f'{{"component":"button-{rng.randrange(300)}","value":{rng.random()}}}' for _ in range(n)],
        "context": ['{"locale":"en-US","library":{"name":"web","version":"1.4.2"}}'] * n,
        "ip": [f"198.51.{rng.randrange(256)}.0" for _ in range(n)],
        "user_agent": ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"] * n,
        "is_bot": [False] * n,
        "bronze_version": [commit] * n,
        "run_id": ["bench"] * n,
    }
    return pa.table({name: columns.get(name, [None] * n) for name in EVENTS.schema.names}, schema=EVENTS.schema)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    first = date(2024, 1, 1)
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        tables: dict[str, TableDef] = {"before (all columns)": FULL, "after (stats_columns)": EVENTS}
        for table in tables.values():
            lake.ensure(table)
        rng = random.Random(7)
        for offset in range(args.days):
            for commit in range(args.commits):
                batch = rows(first + timedelta(days=offset), commit, args.rows, rng)
                for table in tables.values():
                    lake.append(table, batch)
        middle = first + timedelta(days=args.days // 2)
        since = datetime.combine(middle, datetime.min.time(), UTC)
        lookup = lake.dataset(EVENTS).head(1000, columns=["event_id"])["event_id"]
        results: dict[str, dict[str, list[float]]] = {name: {} for name in tables}
        kept: dict[str, dict[str, int]] = {name: {} for name in tables}
        for _ in range(args.rounds):
            for name, table in tables.items():
                seconds, dt = timed(lambda table=table: DeltaTable(lake.uri(table)))
                assert isinstance(dt, DeltaTable)
                reads: dict[str, tuple[float, object]] = {
                    "open": (seconds, dt),
                    "days": timed(
                        lambda dt=dt: dt.to_pyarrow_dataset(
                            file_pruning_predicate=[
                                ("event_date", ">=", middle),
                                ("event_date", "<=", middle + timedelta(days=2)),
                            ]
                        )
                    ),
                    "received": timed(
                        lambda dt=dt: dt.to_pyarrow_dataset(
                            file_pruning_predicate=[
                                ("received_at", ">=", since),
                                ("received_at", "<", since + timedelta(days=1)),
                            ]
                        )
                    ),
                    "event_id": timed(lambda dt=dt: dt.to_pyarrow_dataset()),
                }
                for read in ("days", "received"):
                    dataset = reads[read][1]
                    assert isinstance(dataset, pads.Dataset)
                    kept[name][read] = len(list(dataset.get_fragments()))
                    spent, _ = timed(lambda dataset=dataset: dataset.to_table(columns=["event_id", "received_at"]))
                    reads[read] = (reads[read][0] + spent, dataset)
                dataset = reads["event_id"][1]
                assert isinstance(dataset, pads.Dataset)
                spent, _ = timed(
                    lambda dataset=dataset: dataset.to_table(
                        columns=["event_id"], filter=pads.field("event_id").isin(lookup)
                    )
                )
                reads["event_id"] = (reads["event_id"][0] + spent, dataset)
                for read, (spent, _) in reads.items():
                    results[name].setdefault(read, []).append(spent)
        log_bytes = {
            name: sum(p.stat().st_size for p in (Path(lake.uri(table)) / "_delta_log").iterdir())
            for name, table in tables.items()
        }
        before, after = tables
        print(
            f"{args.days} days x {args.commits} commits x {args.rows} rows = "
            f"{args.days * args.commits * args.rows} rows, {args.days * args.commits} files per table; "
            f"medians of {args.rounds} rounds, ms"
        )
        print(f"{'read':10} {'before':>10} {'after':>10} {'after/before':>13} {'files kept (before/after)':>27}")
        for read in results[before]:
            b = statistics.median(results[before][read]) * 1000
            a = statistics.median(results[after][read]) * 1000
            files = f"{kept[before].get(read, '-')}/{kept[after].get(read, '-')}"
            print(f"{read:10} {b:10.1f} {a:10.1f} {a / b:13.2f} {files:>27}")
        ratio = log_bytes[after] / log_bytes[before]
        print(f"{'log bytes':10} {log_bytes[before]:10d} {log_bytes[after]:10d} {ratio:13.2f}")


if __name__ == "__main__":
    main()
