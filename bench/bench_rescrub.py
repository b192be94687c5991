"""The rescrub of an existing silver table: rows per second rewritten, the purge, peak memory.

Writes ``--days`` event days × ``--commits`` appends per day of ``--rows`` synthetic silver rows
(the shape of ``bench/bench_stats_pruning.py``; every location holds a full client IP, as silver
did before the ``ip_address`` rule) to a temporary lake with statistics on every column, as an older
release wrote it; then runs :func:`pipelines.rescrub.rescrub` with today's rules (every partition
is rewritten, one commit each, the silver suite checking the rewritten rows), times it, runs it a
second time (nothing left to change: the cost of reading and comparing alone), then
:func:`warehouse.lake.maintenance.purge_history` on the table. Prints seconds, rows per second and the
process's peak resident memory.

``--gold``: what the rescrub's records for gold cost (:class:`pipelines.rescrub.GoldChanges`), on a
tiered lake as an upgraded one is: 10% of the page views request a static file and silver has no
asset flag yet (an older release's), the first half of the days is in the cold tier, and gold is
built from it first (``bench/bench_gold.py``'s pipeline run). The lake and warehouse are copied, and
the rescrub runs on each copy, without and with the records (the seconds side by side, their
ratio); then, on the copy with them, the next gold run (which recomputes the recorded days, adds
data quality's cold counts and rechecks first-seen times) against a warehouse built from scratch
from the rescrubbed lake. Usage: ``.venv/bin/python bench/bench_rescrub.py [--days 60]
[--commits 10] [--rows 1000] [--gold]``
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
from bench_gold import run_pipeline
from bench_stats_pruning import rows

from pipelines.pseudonyms import Pseudonymizer
from pipelines.rescrub import GoldChanges, rescrub
from pipelines.scrub_rules import load_rules
from pipelines.scrubbing import Scrubber
from pipelines.silver import Rules
from pipelines.validation import load_suite, suite_path
from warehouse import gold
from warehouse.lake.maintenance import purge_history
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.lake.tiers import move_partition, tiered_lake
from warehouse.marts import catalog

#: The share of page views that request a static file in the ``--gold`` variant.
ASSET_SHARE = 0.1


def with_assets(batch: pa.Table, rng: random.Random) -> pa.Table:
    """``batch`` with :data:`ASSET_SHARE` of its page views turned into requests of an image (sent
    without an SDK context, as an access log's are), the rest unchanged."""
    assets = [kind == "page_view" and rng.random() < ASSET_SHARE for kind in batch["event_type"].to_pylist()]
    urls = [
        f"https://shop.example/img/{n}.png" if a else url
        for n, (a, url) in enumerate(zip(assets, batch["page_url"].to_pylist(), strict=True))
    ]
    contexts = [None if a else context for a, context in zip(assets, batch["context"].to_pylist(), strict=True)]
    batch = batch.set_column(batch.schema.get_field_index("page_url"), "page_url", pa.array(urls, pa.string()))
    return batch.set_column(batch.schema.get_field_index("context"), "context", pa.array(contexts, pa.string()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--gold", action="store_true", help="the rescrub's records for gold: see the docstring")
    args = parser.parse_args()
    if args.gold:
        with tempfile.TemporaryDirectory(prefix="bench-rescrub-gold-") as tmp:
            gold_records(Path(tmp), args.days, args.commits, args.rows)
        return
    total = args.days * args.commits * args.rows
    with tempfile.TemporaryDirectory(prefix="bench-rescrub-") as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        write_old_silver(lake, args.days, args.commits, args.rows, assets=False)
        rules = bench_rules()
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


def bench_rules() -> Rules:
    """Today's rules with a fixed pseudonym key."""
    scrubber = Scrubber()
    return Rules(
        load_suite(suite_path(RAW_EVENTS.name)),
        scrubber,
        Pseudonymizer(b"bench", scrubber),
        load_suite(suite_path(EVENTS.name)),
    )


def write_old_silver(lake: Lake, days: int, commits: int, n: int, assets: bool) -> None:
    """``days`` x ``commits`` appends of ``n`` rows from 2024-01-01, as an older release wrote them
    (statistics on every column, a full IP in every location, no asset flag; ``assets``: some page
    views request static files)."""
    old = dataclasses.replace(EVENTS, stats_columns=())  # same path: silver as an older release left it
    lake.ensure(old)
    rng = random.Random(7)
    for offset in range(days):
        for commit in range(commits):
            batch = rows(date(2024, 1, 1) + timedelta(days=offset), commit, n, rng)
            if assets:
                batch = with_assets(batch, rng)
            lake.append(
                old,
                batch.set_column(
                    batch.schema.get_field_index("location"),
                    "location",
                    [
                        [
                            f'{{"city":"Berlin","ip":"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"}}'
                            for _ in range(n)
                        ]
                    ],
                ),
            )


def served_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every served mart's rows, sorted, without lineage (``silver_version``) and bookkeeping."""
    with gold.connect(path, read_only=True) as con:
        tables = {}
        for name in (name for name, mart in catalog().items() if mart.spec.served):
            relation = con.table(name)
            kept = [column for column in relation.columns if column != "silver_version"]
            tables[name] = sorted(relation.select(*kept).fetchall(), key=repr)
        return tables


def gold_records(tmp: Path, days: int, commits: int, n: int) -> None:
    """The ``--gold`` variant (module docstring): prints seconds per step and the ratios."""
    built = tmp / "built"
    lake = tiered_lake(str(built / "lake"), str(built / "cold"), 9, 64)
    write_old_silver(lake, days, commits, n, assets=True)
    for offset in range(days // 2):
        move_partition(lake, EVENTS, (date(2024, 1, 1) + timedelta(days=offset)).isoformat())
    started = time.perf_counter()
    run_pipeline(built / "warehouse.duckdb", lake, built / "serving.duckdb")
    print(
        f"{days} days x {commits} commits x {n} rows = {days * commits * n} silver rows, "
        f"the first {days // 2} days cold"
    )
    print(f"{'step':44} {'seconds':>8}")
    print(f"{'gold built from the old silver (not measured)':44} {time.perf_counter() - started:8.1f}")
    rules = bench_rules()
    fingerprint = load_rules().fingerprint
    copies = {}
    for variant in ("without", "with"):
        copies[variant] = tmp / variant
        shutil.copytree(built, copies[variant])
    seconds = {}
    for variant, root in copies.items():
        tiers = tiered_lake(str(root / "lake"), str(root / "cold"), 9, 64)
        started = time.perf_counter()
        if variant == "with":
            with gold.connect(root / "warehouse.duckdb", marts=catalog()) as con:
                quality = catalog()["data_quality_daily"].sql("select_silver_counts")
                rescrub(tiers, rules, GoldChanges(con, fingerprint, "UTC", quality))
                recorded = [con.table(name).shape[0] for name in ("gold_recompute_days", "rescrub_count_changes")]
        else:
            rescrub(tiers, rules)
        seconds[variant] = time.perf_counter() - started
        print(f"{'rescrub, ' + variant + ' the records for gold':44} {seconds[variant]:8.1f}")
    print(
        f"{'  ratio with / without':44} {seconds['with'] / seconds['without']:8.2f}   "
        f"(recorded: {recorded[0]} days, {recorded[1]} count changes)"
    )
    root = copies["with"]
    tiers = tiered_lake(str(root / "lake"), str(root / "cold"), 9, 64)
    started = time.perf_counter()
    run_pipeline(root / "warehouse.duckdb", tiers, root / "serving.duckdb")
    catch_up = time.perf_counter() - started
    print(f"{'next gold run (recorded days, counts, recheck)':44} {catch_up:8.1f}")
    started = time.perf_counter()
    run_pipeline(root / "rebuilt.duckdb", tiers, root / "rebuilt_serving.duckdb")
    rebuild = time.perf_counter() - started
    print(f"{'gold built from scratch instead':44} {rebuild:8.1f}")
    print(f"{'  ratio next run / from scratch':44} {catch_up / rebuild:8.2f}")
    same = served_rows(root / "serving.duckdb") == served_rows(root / "rebuilt_serving.duckdb")
    print(f"the served marts after the next run equal those built from scratch: {same}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
