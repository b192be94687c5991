"""Silver and gold processing cost per stage, for micro-batches of growing size, side by side.

Writes N synthetic bronze events (realistic mix: 2,000 users, 300 distinct user agents, 5% bots,
1% content-invalid, URLs with query strings) to a temporary lake, then times each stage of the
silver step and the gold refresh. Prints one row per N with µs per event, so the scaling is
visible as a ratio. Usage: .venv/bin/python bench/bench_silver.py [--sizes 20000 100000 300000]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines import transform  # noqa: E402
from pipelines.gold import refresh_mart  # noqa: E402
from pipelines.validation import load_suite, split_by_suite  # noqa: E402
from warehouse import gold  # noqa: E402
from warehouse.contract import RequestContext, explode_payload  # noqa: E402
from warehouse.lake import Lake  # noqa: E402
from warehouse.tables import EVENTS, RAW_EVENTS  # noqa: E402

AGENTS = [
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{100 + i}.0 Safari/537.36" for i in range(285)
] + [f"Googlebot/2.{i} (+http://www.google.com/bot.html)" for i in range(15)]


def bronze(n: int, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    ctx = RequestContext(received_at=datetime.now(UTC), ip="203.0.113.9")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        ts = start + timedelta(seconds=rng.randrange(90 * 86400))
        payload = {
            "uuid": f"e{i}",
            "timestamp": ts.isoformat(),
            "app": "bench",
            "user": f"u{rng.randrange(2000)}",
            "page": f"https://shop.example/p/{rng.randrange(200)}?ref=mail&token=t{rng.randrange(10)}",
            "userAgent": rng.choice(AGENTS),
            "events": {"click" if rng.random() > 0.01 else "Bad Name": {"component": f"c{rng.randrange(30)}"}},
        }
        rows.extend(explode_payload(payload, ctx))
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        version = lake.append(RAW_EVENTS, bronze(n))
        timings: dict[str, float] = {}

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            value = fn()
            timings[name] = time.perf_counter() - started
            return value

        changes = timed("read_cdf", lambda: lake.changes(RAW_EVENTS, -1, version))
        decoded = timed("decode", lambda: transform.decode(changes))
        suite = load_suite("raw_events")
        split = timed("validate_ge", lambda: split_by_suite(transform.validation_frame(decoded), suite))
        valid = transform.dedup_first_received(decoded.filter(pl.Series(split.valid)))
        silver = timed("scrub_enrich", lambda: transform.build_silver(valid, "bench"))
        timed("dedup_insert", lambda: lake.insert_new(EVENTS, silver))
        con = gold.connect(Path(tmp) / "w.duckdb")
        timed("gold_dau", lambda: refresh_mart(con, lake, "daily_active_users"))
        timed("gold_mau", lambda: refresh_mart(con, lake, "monthly_active_users"))
        con.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    args = parser.parse_args()
    results = [(n, run(n)) for n in args.sizes]
    stages = list(results[0][1])
    print("µs per event by stage (lower is better); 'x first' = total per-event cost vs the smallest batch")
    print(f"{'events':>8} " + " ".join(f"{s:>12}" for s in stages) + f" {'total s':>8} {'x first':>8}")
    first = sum(results[0][1].values()) / results[0][0]
    for n, t in results:
        per_event = sum(t.values()) / n
        print(
            f"{n:>8} "
            + " ".join(f"{t[s] / n * 1e6:>12.1f}" for s in stages)
            + f" {sum(t.values()):>8.2f} {per_event / first:>8.2f}"
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
