"""Silver's dedup as silver grows: one micro-batch at 1M and at 50M silver rows, side by side.

Silver is grown with synthetic rows (its real schema; random 32-character ids, spread over a year
of ``event_date`` partitions, appended 1M rows per commit) to each size of ``--silver-rows``. At each
size, a micro-batch of ``--batch-events`` new bronze events (bench/silver_step.py's generator) is
run through ``pipelines.silver.ingest``, then the same events again (a client's retries: every one
a duplicate), ``--rounds`` times with new events each round (medians). Measured, in this process:

* ``index build s``: silver's key index brought up to date after the growth (a rebuild from the
  table, streamed; once per index, or after a rewrite of the whole table);
* ``scan ms``: the lookup silver used before the index (``pipelines.silver.prior_hashes``: a scan
  of every ``event_id`` of silver for the batch's ids);
* ``index ms``: the same lookup through the index (``pipelines.silver.silver_ids``: sync + point
  lookups, the index kept open by the process as the hot path keeps it);
* ``of which sync ms`` / ``lookup ms``: the index's catch-up with silver (opens silver's log) and its
  point lookups alone;
* ``new batch s`` / ``retried batch s``: the whole micro-batch (decode, validation, scrub,
  enrichment, dedup, the silver commit) for the new events and for their retries.

With ``--cold-share F``, the oldest event days holding about that share of silver's rows are moved
to the cold tier (:func:`warehouse.lake.tiers.move_older`) before each size is measured: dedup then
spans both tiers (the index holds both; the scan reads both).

Prints one row per size and the ratio of the largest size's figures to the smallest's (the
target: the micro-batch flat, the index lookup within 1.3x). Usage:
``.venv/bin/python bench/bench_dedup.py [--silver-rows 1000000,50000000] [--batch-events 10000] [--cold-share 0.5]
[--rounds 3]``
"""

import sys
from pathlib import Path

# Heavy imports stay inside functions: the silver step's worker processes re-import this script.


def grow_silver(lake: object, rows: int, start: int, chunk: int = 1_000_000) -> None:
    """Append synthetic silver rows ``start``..``rows`` in commits of ``chunk``: ids from a hash of
    the row number (unique, in no order, as uuids are), one event day per ~137k rows."""
    import polars as pl
    import pyarrow as pa

    from warehouse.lake.tables import EVENTS

    for first in range(start, rows, chunk):
        count = min(chunk, rows - first)
        number = pl.int_range(first, first + count, dtype=pl.UInt64, eager=True)
        known = pl.DataFrame(
            {
                "event_id": "s" + number.hash(seed=1).cast(pl.String) + "-" + number.cast(pl.String),
                "content_hash": number.hash(seed=2).cast(pl.String),
                "event_date": pl.date_range(pl.date(2023, 1, 1), pl.date(2023, 12, 31), eager=True).gather(
                    (number // ROWS_PER_DAY % 365).cast(pl.UInt32)
                ),
            }
        ).to_arrow()
        columns = {
            field.name: known[field.name].cast(field.type)
            if field.name in known.column_names
            else pa.nulls(count, field.type)
            for field in EVENTS.schema
        }
        lake.append(EVENTS, pa.table(columns, schema=EVENTS.schema))  # type: ignore[attr-defined]


#: Synthetic rows per event day (grow_silver).
ROWS_PER_DAY = 137_000


def move_to_cold(lake: object, rows: int, share: float) -> int:
    """Move the event days holding the first ``share`` of ``rows`` synthetic rows to the cold tier; how many days."""
    from datetime import date, timedelta

    from warehouse.lake.tables import EVENTS
    from warehouse.lake.tiers import move_older

    days = min(365, int(rows * share) // ROWS_PER_DAY)
    return len(move_older(lake, EVENTS, date(2023, 1, 1) + timedelta(days=days)))  # type: ignore[arg-type]


def measure(lake: object, size: int, batch_events: int, rounds: int) -> dict[str, float]:
    """At one silver size: the index build, then ``rounds`` times both lookups and the two
    micro-batches, each round with new events (see the module); medians."""
    import statistics
    import time

    import polars as pl
    from silver_step import bronze

    from pipelines import silver
    from pipelines.parallel import Parallelism
    from pipelines.pseudonyms import Pseudonymizer
    from pipelines.scrubbing import Scrubber
    from pipelines.validation import load_suite, suite_path
    from warehouse.lake.key_index import shared_key_index
    from warehouse.lake.tables import EVENTS, RAW_EVENTS
    from warehouse.settings import Settings

    scrubber = Scrubber()
    settings = Settings()
    rules = silver.Rules(
        load_suite(suite_path("raw_events")),
        scrubber,
        Pseudonymizer(b"bench-key", scrubber),
        load_suite(suite_path("events")),
        Parallelism(settings.silver_workers, settings.silver_parallel_min_rows),
    )
    times: dict[str, list[float]] = {}

    def timed(name: str, work: object, *args: object) -> object:
        started = time.perf_counter()
        value = work(*args)  # type: ignore[operator]
        times.setdefault(name, []).append(time.perf_counter() - started)
        return value

    first = bronze(1, prefix=f"first{size}-")
    timed("index build s", silver.silver_ids, lake, pl.Series("event_id", first["event_id"].to_pylist()))
    # A micro-batch of other events first, the same size: suites, rules and the worker pool loaded.
    lake.append(RAW_EVENTS, bronze(batch_events, prefix=f"warm{size}-"))
    silver.ingest(lake, rules, f"warm-{size}", 10 * batch_events)
    index = shared_key_index(lake.local_dir("index") / EVENTS.name, lake, EVENTS, "event_id", "content_hash")
    for round_ in range(rounds):
        events = bronze(batch_events, prefix=f"at{size}r{round_}-")
        ids = pl.Series("event_id", events["event_id"].to_pylist())
        timed("scan ms", silver.prior_hashes, lake, ids)
        timed("index ms", silver.silver_ids, lake, ids)
        timed("of which sync ms", index.sync)
        timed("lookup ms", index.lookup, events["event_id"])
        lake.append(RAW_EVENTS, events)
        new = timed("new batch s", silver.ingest, lake, rules, f"new-{size}-{round_}", 10 * batch_events)
        lake.append(RAW_EVENTS, events)
        retried = timed("retried batch s", silver.ingest, lake, rules, f"retry-{size}-{round_}", 10 * batch_events)
        assert new.inserted > 0.9 * batch_events and retried.inserted == 0, (new, retried)  # type: ignore[attr-defined]
    result = {name: statistics.median(values) for name, values in times.items()}
    for name in ("scan ms", "index ms", "of which sync ms", "lookup ms"):
        result[name] *= 1000
    return result


def main() -> None:
    import argparse
    import os
    import tempfile

    from warehouse.lake.tiers import tiered_lake

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--silver-rows", default="1000000,50000000", help="silver sizes, comma-separated")
    parser.add_argument("--batch-events", type=int, default=10_000, help="bronze events per micro-batch")
    parser.add_argument("--cold-share", type=float, default=0.0, help="share of silver's rows moved to the cold tier")
    parser.add_argument("--rounds", type=int, default=3, help="micro-batches of each kind per size (medians)")
    args = parser.parse_args()
    sizes = sorted(int(v) for v in args.silver_rows.split(","))
    rows: list[tuple[int, dict[str, float]]] = []
    # The index stays open in this process (as in the hot path's): its files may outlive the cleanup.
    with tempfile.TemporaryDirectory(prefix="bench_dedup_", ignore_cleanup_errors=True) as tmp:
        lake = tiered_lake(f"{tmp}/lake", f"{tmp}/cold", 9, 512)
        grown = 0
        for size in sizes:
            grow_silver(lake, size, grown)
            grown = size
            moved = move_to_cold(lake, size, args.cold_share) if args.cold_share else 0
            stats = measure(lake, size, args.batch_events, args.rounds)
            stats["cold days"] = moved
            rows.append((size, stats))
            sys.stderr.write(f"{size:,} silver rows: {stats}\n")
        index_mb = sum(f.stat().st_size for f in (Path(tmp) / "lake" / "_index").rglob("*") if f.is_file()) / 2**20
    names = list(rows[0][1])
    print(
        f"micro-batch of {args.batch_events:,} events; {os.cpu_count()} cores; index at the end: {index_mb:,.0f} MiB; "
        f"cold share {args.cold_share:.0%}; medians of {args.rounds} rounds\n"
    )
    print("| silver rows | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for size, stats in rows:
        print(f"| {size:,} | " + " | ".join(f"{stats[name]:,.2f}" for name in names) + " |")
    first, last = rows[0][1], rows[-1][1]
    print(
        f"| ratio {rows[-1][0] // rows[0][0]}x rows | "
        + " | ".join(f"{last[n] / first[n]:.2f}x" if first[n] else "-" for n in names)
        + " |"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
