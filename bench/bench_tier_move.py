"""The move of a cold day's late events as that cold day grows: flat, against the reconciling move
that reads the cold day (what every move of late events did before the moves' transaction ids).

For each ``--day-rows`` size, a fresh tiered lake gets one event day of that many synthetic silver
rows (random ids, realistic text columns), moved to the cold tier. Then, ``--rounds`` times each,
side by side:

* ``late move ms``: ``--late`` new events of that day appended to hot, then
  :func:`warehouse.lake.tiers.move_partition` (an append to cold, the verification of the files it
  added, the delete from hot);
* ``after a stopped copy ms``: the same, but the first move stops after its copy (a crash before the
  delete), and the move run again is timed: it reads the cold day's rows with the events' ids to
  reconcile and verify.

Prints medians per size and the ratio of the largest size's to the smallest's (target: the late move
within 1.3x). Usage: ``.venv/bin/python bench/bench_tier_move.py [--day-rows 100000,5000000]
[--late 1000] [--rounds 5] [--cold local|s3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse.lake.store import Lake  # noqa: E402 (after the path)
from warehouse.lake.tables import EVENTS  # noqa: E402
from warehouse.lake.tiers import move_partition, tiered_lake  # noqa: E402

DAY = date(2024, 1, 2)


def day_rows(first: int, count: int) -> pa.Table:
    """``count`` synthetic silver rows of :data:`DAY` numbered from ``first``: unique random-looking
    ids, 1,000 users, 50 pages; the other columns null."""
    number = pl.int_range(first, first + count, dtype=pl.UInt64, eager=True)
    known = pl.DataFrame(
        {
            "event_id": "m" + number.hash(seed=1).cast(pl.String) + "-" + number.cast(pl.String),
            "content_hash": number.hash(seed=2).cast(pl.String),
            "event_type": pl.Series(["page_view", "click", "scroll"]).gather((number % 3).cast(pl.UInt32)),
            "app": pl.repeat("shop", count, eager=True),
            "user_id": "u" + (number.hash(seed=3) % 1000).cast(pl.String),
            "page_url": "https://shop.example/p/" + (number % 50).cast(pl.String),
            "timestamp": pl.repeat(datetime(2024, 1, 2, 12, tzinfo=UTC), count, eager=True),
            "event_date": pl.repeat(DAY, count, eager=True),
        }
    ).to_arrow()
    columns = {
        field.name: (
            known[field.name].cast(field.type) if field.name in known.column_names else pa.nulls(count, field.type)
        )
        for field in EVENTS.schema
    }
    return pa.table(columns, schema=EVENTS.schema)


class Stop(RuntimeError):
    """The crash of the first move, after its copy."""


def stopped_then_moved(lake: Lake) -> float:
    """Run a move that stops after its copy, then time the move run again (seconds)."""
    real = Lake.delete_where

    def crash(*args: object, **kwargs: object) -> int:
        raise Stop

    Lake.delete_where = crash  # type: ignore[method-assign]
    try:
        move_partition(lake, EVENTS, DAY.isoformat())
    except Stop:
        pass
    finally:
        Lake.delete_where = real  # type: ignore[method-assign]
    started = time.perf_counter()
    move_partition(lake, EVENTS, DAY.isoformat())
    return time.perf_counter() - started


def measure(size: int, late: int, rounds: int, s3: Any = None) -> dict[str, float]:
    """Medians (ms) of both moves at one cold day size; ``s3``: the cold root in a fresh bucket of
    this S3 server (``scripts/s3_server.py``), else a local folder."""
    with tempfile.TemporaryDirectory(prefix="bench_tier_move_") as tmp:
        cold, options = f"{tmp}/cold", None
        if s3 is not None:
            bucket = f"cold-{uuid.uuid4().hex[:10]}"
            s3.create_bucket(bucket)
            cold, options = f"s3://{bucket}/cold", s3.storage_options
        # Both roots get the options; delta-rs and pyarrow apply them to s3:// URIs only.
        lake = tiered_lake(f"{tmp}/hot", cold, 9, 512, storage_options=options)
        for first in range(0, size, 1_000_000):
            lake.append(EVENTS, day_rows(first, min(1_000_000, size - first)))
        move_partition(lake, EVENTS, DAY.isoformat())
        next_id = size
        late_ms, stopped_ms = [], []
        for _ in range(rounds):
            lake.append(EVENTS, day_rows(next_id, late))
            next_id += late
            started = time.perf_counter()
            report = move_partition(lake, EVENTS, DAY.isoformat())
            late_ms.append((time.perf_counter() - started) * 1000)
            assert (report.rows, report.copied) == (late, late), report
            lake.append(EVENTS, day_rows(next_id, late))
            next_id += late
            stopped_ms.append(stopped_then_moved(lake) * 1000)
        assert lake.cold is not None
        held = lake.cold.dataset(EVENTS).count_rows()
        assert held == next_id and lake.dataset(EVENTS, cold=False).count_rows() == 0, (held, next_id)
    return {"late move ms": statistics.median(late_ms), "after a stopped copy ms": statistics.median(stopped_ms)}


def main() -> None:
    """Parse the arguments, measure every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day-rows", default="100000,5000000", help="cold day sizes, comma-separated")
    parser.add_argument("--late", type=int, default=1_000, help="late events per move")
    parser.add_argument("--rounds", type=int, default=5, help="moves of each kind per size (medians)")
    parser.add_argument(
        "--cold", choices=["local", "s3"], default="local", help="s3: the cold root on a file-backed local Ceph RGW"
    )
    args = parser.parse_args()
    sizes = sorted(int(v) for v in args.day_rows.split(","))
    s3 = None
    with tempfile.TemporaryDirectory(prefix="bench_tier_move_rgw_") as rgw:
        if args.cold == "s3":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
            import s3_server  # noqa: PLC0415

            s3 = s3_server.start(Path(rgw), persistent=True, size_mb=16384)
        try:
            results = [(size, measure(size, args.late, args.rounds, s3)) for size in sizes]
        finally:
            if s3 is not None:
                s3.stop()
    names = list(results[0][1])
    print(f"{args.late:,} late events per move, {args.rounds} rounds (medians), cold root: {args.cold}\n")
    print("| cold day rows | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for size, stats in results:
        print(f"| {size:,} | " + " | ".join(f"{stats[n]:,.0f}" for n in names) + " |")
    first, last = results[0][1], results[-1][1]
    ratio = results[-1][0] / results[0][0]
    print(f"| ratio ({ratio:,.0f}x rows) | " + " | ".join(f"{last[n] / first[n]:.2f}x" for n in names) + " |")


if __name__ == "__main__":
    main()
