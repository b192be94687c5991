"""The bronze → silver benchmark itself (run it through ``bench/bench_silver.py``, see there)."""

from __future__ import annotations

import argparse
import ipaddress
import random
import re
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines import transform
from pipelines.gold import refresh_mart
from pipelines.parallel import Parallelism, RowPool
from pipelines.pseudonyms import Pseudonymizer
from pipelines.registry import known_types
from pipelines.scrub_rules import ScrubRules
from pipelines.scrubbing import Scrubber
from pipelines.silver import prior_hashes, write_checked
from pipelines.validation import FAILED_CHECKS, SplitResult, failed_checks, load_suite, split_rows, suite_path
from warehouse import gold
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.history import change_stream
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, PROPERTY_TYPES, RAW_EVENTS, TableDef

AGENTS = [
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{100 + i}.0 Safari/537.36" for i in range(285)
] + [f"Googlebot/2.{i} (+http://www.google.com/bot.html)" for i in range(15)]
VARIANTS = ("full", "single_process", "no_validation", "no_scrub")
USERS = 2_000


def public_addresses(n: int, seed: int) -> list[str]:
    """``n`` random global IPv4 addresses (one per user: the geo lookup sees ~``n`` distinct /24s)."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < n:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            found.append(str(address))
    return found


NO_RULES = ScrubRules(re.compile(r"(?!)"), re.compile(r"(?!)"), ())


def event_value(rng: random.Random, kind: str) -> Any:
    if kind == "click":
        return {
            "component": f"c{rng.randrange(30)}",
            "product": {
                "id": f"SKU-{rng.randrange(5000)}",
                "price": rng.randrange(100, 99999) / 100,
                "tags": ["a", "b"],
            },
        }
    if kind == "cart":
        return {"items": [{"sku": f"SKU-{rng.randrange(5000)}", "qty": rng.randrange(1, 4)} for _ in range(3)]}
    if kind == "errors":
        return {"message": "TypeError: x is undefined", "stackTrace": f"at f (app.js:{rng.randrange(900)}:12)\n" * 4}
    return rng.randrange(101)  # scroll: a bare depth in percent


def bronze(n: int, seed: int = 7, prefix: str = "e") -> pa.Table:
    """``n`` synthetic bronze events (ids from ``prefix`` and their index, the rest from ``seed``)."""
    rng = random.Random(seed)
    ctx = RequestContext(received_at=datetime.now(UTC), ip="203.0.113.9")
    addresses = public_addresses(USERS, seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    kinds = ["click"] * 6 + ["cart"] * 2 + ["scroll", "errors"]
    for i in range(n):
        kind = rng.choice(kinds) if rng.random() > 0.01 else "Bad Name"
        user = rng.randrange(USERS)
        payload = {
            "uuid": f"{prefix}{i}",
            "timestamp": (start + timedelta(seconds=rng.randrange(90 * 86400))).isoformat(),
            "app": "bench",
            "user": f"u{user}",
            "ip": addresses[user],
            "session": f"s{rng.randrange(20000)}",
            "page": f"https://shop.example/p/{rng.randrange(200)}?ref=mail&token=t{rng.randrange(10)}",
            "userAgent": rng.choice(AGENTS),
            "events": {"scroll" if kind == "scroll" else kind: event_value(rng, kind)},
        }
        rows.extend(explode_payload(payload, ctx))
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


def run(lake: Lake, version: int, variant: str) -> dict[str, float]:
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - started
        return value

    suite, silver_suite = load_suite(suite_path("raw_events")), load_suite(suite_path("events"))
    scrubber = Scrubber(NO_RULES) if variant == "no_scrub" else Scrubber()
    pseudonymizer = None if variant == "no_scrub" else Pseudonymizer(b"bench-key", scrubber)
    changes = timed("read_cdf", lambda: change_stream(lake, RAW_EVENTS, -1, version).read_all())
    # Worker processes as the pipeline's defaults start them (one process per core), except
    # single_process; pool start-up is inside the decode stage.
    pool = RowPool(Parallelism(workers=1 if variant == "single_process" else 0), changes.num_rows)
    with pool:
        decoded = timed("decode", lambda: transform.decode(changes, pool))
        if variant == "no_validation":
            timings["consistency"] = timings["validate_ge"] = 0.0
            split = SplitResult(np.ones(decoded.height, dtype=bool), {}, [])
            checked = decoded.with_columns(
                pl.lit(False).alias("duplicate_conflict"), pl.lit(None, pl.String).alias("type_conflict")
            )
            prior = None
        else:

            def consistency() -> tuple[pl.DataFrame, pl.DataFrame]:
                prior = prior_hashes(lake, decoded["event_id"])
                return prior, transform.with_consistency(decoded, prior, known_types(lake))[0]

            prior, checked = timed("consistency", consistency)
            rows = transform.validation_frame(checked)
            split = timed(
                "validate_ge",
                lambda: split_rows(pool.map(failed_checks, rows, suite, host_workers=False)[FAILED_CHECKS], suite),
            )
        valid, _, _ = transform.apply_split(checked, split)
        started = time.perf_counter()
        silver = transform.build_silver(valid, "bench", scrubber, pseudonymizer, pool)
    timings["scrub_enrich"] = time.perf_counter() - started  # with the workers' shutdown
    if prior is None:  # no conflict check read silver's ids: the anti-join scans for them
        timed("suite_insert", lambda: lake.insert_new(EVENTS, silver))
    else:  # as pipelines/silver.py: dedup + append with the silver suite checked meanwhile
        existing = prior["event_id"].to_arrow().cast(pa.string())
        timed(
            "suite_insert",
            lambda: write_checked(lambda: lake.insert_new(EVENTS, silver, existing=existing), silver, silver_suite),
        )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        started = time.perf_counter()
        version = lake.append(RAW_EVENTS, bronze(n))
        print(f"generated and appended {n:,} bronze events in {time.perf_counter() - started:.0f} s")
        change_stream(lake, RAW_EVENTS, -1, version).read_all()  # warm-up: every variant then reads from the page cache
        results = {variant: run(_VariantLake(lake.root, variant), version, variant) for variant in VARIANTS}
        con = gold.connect(Path(tmp) / "w.duckdb")
        gold_s = {}
        for mart in ("daily_active_users", "monthly_active_users"):
            started = time.perf_counter()
            refresh_mart(con, _VariantLake(lake.root, "full"), mart)
            gold_s[mart] = time.perf_counter() - started
        con.close()

    stages = list(results["full"])
    full_total = sum(results["full"].values())
    print(f"bronze → silver, {n:,} events, µs per event by stage (lower is better)")
    print(f"{'variant':<14} " + " ".join(f"{s:>12}" for s in stages) + f" {'total s':>8} {'events/s':>9} {'x full':>7}")
    for variant, t in results.items():
        total = sum(t.values())
        print(
            f"{variant:<14} "
            + " ".join(f"{t[s] / n * 1e6:>12.1f}" for s in stages)
            + f" {total:>8.1f} {n / total:>9,.0f} {total / full_total:>7.2f}"
        )
    print("gold refresh after the full variant: " + ", ".join(f"{m} {s:.1f} s" for m, s in gold_s.items()))
    print(geo_cost(n))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def geo_cost(n: int) -> str:
    """The IP → country lookup inside ``scrub_enrich`` on its own (:func:`pipelines.transform.country_columns`,
        no location sent): ``n`` rows of :data:`USERS` clients' full addresses, then ``n`` rows each from
        another address (the worst case: every event a new client). Wall seconds and CPU µs per event
    (CPU time: what a shared machine's load does not inflate)."""
    cases = {
        f"{USERS:,} clients": [address for address in public_addresses(USERS, 7) for _ in range(n // USERS)],
        f"{n:,} clients": public_addresses(n, 11),
    }
    parts = []
    for name, addresses in cases.items():
        ips = pl.Series("ip", addresses)
        nothing = pl.Series("none", [None] * ips.len(), dtype=pl.String)
        started, cpu = time.perf_counter(), time.process_time()
        country, _source = transform.country_columns(nothing, ips, nothing)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        found = country.drop_nulls().len()
        parts.append(f"{name}: {elapsed:.3f} s, {cpu / ips.len() * 1e6:.2f} µs CPU/event ({found:,} with a country)")
    return f"geo (IP → country) over {n:,} rows: " + "; ".join(parts)


class _VariantLake(Lake):
    """The bench lake, with silver and the type registry kept apart per variant."""

    def __init__(self, root: str, variant: str) -> None:
        super().__init__(root)
        self.variant = variant

    def uri(self, table: TableDef) -> str:
        if table.name in (EVENTS.name, PROPERTY_TYPES.name):
            return f"{super().uri(table)}_{self.variant}"
        return super().uri(table)
