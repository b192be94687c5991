"""Gold update cost against history size: one new day of events on a small and a large history.

For each history size (default 1M and 50M events) the benchmark writes a synthetic silver table
straight to a temporary lake (bronze and the silver step are not what is measured here): 180 days
of events of one app, people drawn from one pool of ``--users`` (default 100k) for every history,
60% page views, 25% component clicks, 10% form field events, 4% errors with stack traces, 1% bots.
It builds gold once from that history (timed, not the target). Then, in ``--rounds`` rounds
(default 3) that alternate the histories, it copies the built lake and warehouse, appends one new
day of ``--update`` events (default 1M; the same rows for every history: its own seed) and times
what one pipeline run does with it, as the ``gold_marts`` step does: one warehouse connection and
one shared read of silver's change feed for every mart (and each mart's refresh on its own line):

* ``marts``: ``refresh`` of every incremental mart in dependency order (identity refresh included),
  sharing one ``MicroBatch``;
* ``checks``: each changed mart's GE invariants on the rows its refresh rewrote;
* ``retention``: the ``retention_cohorts`` rebuild from ``active_person_weeks``;
* ``data_quality``: ``data_quality_daily``, recomputed for the received days that changed;
* ``snapshot``: publishing the serving snapshot (on a connection of its own, as its asset does).

The fixed part of a run is reported on its own line (``no-op run``: the same calls when nothing
is new: opening the tables, reading watermarks and bounds), measured on the same copy just before
the new day is appended. Prints the median seconds per part and history size over the rounds, the
process's peak resident memory after each build, and the ratio large/small; the target is update
compute within 1.5x. Usage:
``.venv/bin/python bench/bench_gold.py [--histories 1000000 50000000] [--update 1000000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.data_quality import refresh_data_quality  # noqa: E402
from pipelines.defs.checks import validate_mart  # noqa: E402
from pipelines.defs.gold import dependency_order  # noqa: E402
from pipelines.first_seen import refresh_first_seen  # noqa: E402
from pipelines.gold import MicroBatch, refresh  # noqa: E402
from pipelines.gold_rebuild import refresh_rebuilt  # noqa: E402
from pipelines.identity import refresh_identity  # noqa: E402
from warehouse import gold  # noqa: E402
from warehouse.lake.store import Lake  # noqa: E402
from warehouse.lake.tables import EVENTS  # noqa: E402
from warehouse.marts import catalog  # noqa: E402
from warehouse.serving import publish_snapshot  # noqa: E402

FIRST_DAY = date(2024, 1, 1)
DAYS = 180
CHUNK = 5_000_000
PAGES = [f"https://app.example.com/p/{i}" for i in range(200)]
PROPERTIES = {
    "page_view": ["{}"],
    "click": [f'{{"component": "button-{i}"}}' for i in range(50)],
    "form_field": [f'{{"form": "signup", "field": "f{i}", "step": {i}}}' for i in range(1, 13)],
    "errors": [
        f'{{"message": "Cannot read id of undefined", "stackTrace": "TypeError: x\\n    at f{i} (https://a/app.js:{i}:7)"}}'
        for i in range(20)
    ],
}
TYPES = list(PROPERTIES)
TYPE_SHARES = [0.60, 0.25, 0.10, 0.05]


def synthetic_silver(
    rng: np.random.Generator,
    start: int,
    n: int,
    users: int,
    first: date,
    days: int,
    hours: tuple[float, float] = (0, 24),
) -> pa.Table:
    """``n`` silver rows (ids from ``start``) spread uniformly over ``days`` days from ``first``, at times
    of day between ``hours`` (UTC)."""
    day_index = rng.integers(0, days, n)
    time_of_day = rng.integers(int(hours[0] * 3_600_000_000), int(hours[1] * 3_600_000_000), n)
    epoch_us = np.datetime64(first, "us").astype(np.int64) + day_index * 86_400_000_000 + time_of_day
    kinds = rng.choice(len(TYPES), n, p=TYPE_SHARES)
    properties = np.empty(n, dtype=object)
    for k, kind in enumerate(TYPES):
        where = np.flatnonzero(kinds == k)
        options = np.array(PROPERTIES[kind], dtype=object)
        properties[where] = options[rng.integers(0, len(options), where.size)]
    ids = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
    user_numbers = pc.cast(pa.array(rng.integers(0, users, n)), pa.string())
    timestamps = pa.array(epoch_us, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    columns = {
        "event_id": pc.binary_join_element_wise("e", ids, ""),
        "event_type": pa.array(np.array(TYPES, dtype=object)[kinds], pa.string()),
        "app": pa.array(np.full(n, "bench", dtype=object), pa.string()),
        "source": pa.array(np.full(n, "local", dtype=object), pa.string()),
        "source_format": pa.array(np.full(n, "native", dtype=object), pa.string()),
        "timestamp": timestamps,
        "event_date": pc.cast(timestamps, pa.date32()),
        "received_at": timestamps,
        "user_id": pc.binary_join_element_wise("u", user_numbers, ""),
        "page_url": pa.array(np.array(PAGES, dtype=object)[rng.integers(0, len(PAGES), n)], pa.string()),
        "properties": pa.array(properties, pa.string()),
        "is_bot": pa.array(rng.random(n) < 0.01),
    }
    length = len(columns["event_id"])
    full = {name: columns.get(name, pa.nulls(length, EVENTS.schema.field(name).type)) for name in EVENTS.schema.names}
    return pa.table(full, schema=EVENTS.schema)


#: The incremental marts, each refresh timed on its own line.
INCREMENTAL = [name for name, mart in catalog().items() if mart.spec.kind == "incremental"]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_pipeline(warehouse: Path, lake: Lake, serving: Path) -> dict[str, float]:
    """One run's gold work, timed by part, as the ``gold_marts`` step does it (``pipelines.defs.gold``):
    one warehouse connection and one :class:`pipelines.gold.MicroBatch` shared by every mart (one
    read of silver's change feed), the marts in dependency order, then the checks on the rows each
    rewrote; then the serving snapshot on a connection of its own. ``marts`` includes opening the
    warehouse; ``person state`` is the person-level state every mart reads (identity links and
    first-seen times), brought up to silver's version first (in the gold step the first mart's
    refresh does it), so the marts find it current."""
    parts = dict.fromkeys(("person state", "marts", "checks", "retention", "data_quality", "snapshot"), 0.0)
    marts = catalog()
    started = time.perf_counter()
    with gold.connect(warehouse) as con:
        batch = MicroBatch(lake)
        version, zone = batch.silver_version, batch.options.reporting_timezone
        parts["person state"] = timed(
            lambda: (
                refresh_identity(con, lake, version, batch.feed),
                refresh_first_seen(con, lake, version, zone, batch.feed),
            )
        )
        rewritten: dict[str, int] = {}
        for mart in dependency_order(marts):
            if mart.spec.kind != "incremental":
                continue
            part = time.perf_counter()
            rewritten[mart.name] = refresh(con, batch, mart).rewritten_rows
            parts[f"mart {mart.name}"] = time.perf_counter() - part
        parts["marts"] = time.perf_counter() - started - parts["person state"]
        retention = marts["retention_cohorts"]
        upstream_changed = any(rewritten.get(name, 1) for name in retention.spec.reads)
        parts["retention"] = timed(lambda: refresh_rebuilt(con, retention, upstream_changed))
        quality = marts["data_quality_daily"]
        parts["data_quality"] = timed(lambda: refresh_data_quality(con, lake, quality, batch.feed))
        for name, rows in [*rewritten.items(), (retention.name, 1)]:
            if rows:  # as the gold step: only marts that rewrote rows, incremental ones by their version
                version = batch.silver_version if name != retention.name else None
                suite = marts[name].folder.joinpath("expectations.json")
                parts["checks"] += timed(lambda c=con, n=name, s=suite, v=version: validate_mart(c, n, s, 500_000, v))  # type: ignore[misc]
    parts["snapshot"] = timed(lambda: _on_connection(warehouse, lambda con: publish_snapshot(con, serving, marts)))
    return parts


def _on_connection(warehouse: Path, step: Callable[[duckdb.DuckDBPyConnection], object]) -> None:
    """Run ``step`` on a connection of its own, opened and closed around it."""
    with gold.connect(warehouse) as con:
        step(con)


def build(history: int, users: int, days: int, hours: tuple[float, float], root: Path) -> dict[str, float]:
    """Write ``history`` synthetic silver rows over ``days`` days (at ``hours`` of each) under ``root``
    and build gold from them (timed)."""
    rng = np.random.default_rng(7)
    lake = Lake(str(root / "lake"))
    started = time.perf_counter()
    for start in range(0, history, CHUNK):
        rows = synthetic_silver(rng, start, min(CHUNK, history - start), users, FIRST_DAY, days, hours)
        lake.append(EVENTS, rows)
    write_s = time.perf_counter() - started
    initial = run_pipeline(root / "warehouse.duckdb", lake, root / "serving.duckdb")
    return {
        "write history": write_s,
        "initial build": sum(value for part, value in initial.items() if not part.startswith("mart ")),
        "initial build: person state": initial["person state"],
        # Linux reports the process's peak resident set in KiB; histories are built small to large,
        # so this is the peak of the largest history built so far.
        "peak RSS (GB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure_update(
    history: int, update: int, users: int, new_day: date, hours: tuple[float, float], built: Path, scratch: Path
) -> dict[str, float]:
    """One round on a copy of the built history: a no-op run, then ``update`` events of ``new_day``
    (at ``hours``) appended and the update run, both timed by part."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(built, scratch)
    lake = Lake(str(scratch / "lake"))
    warehouse, serving = scratch / "warehouse.duckdb", scratch / "serving.duckdb"
    noop = run_pipeline(warehouse, lake, serving)
    # The same new day whatever the history: its own seed, the same user pool.
    lake.append(EVENTS, synthetic_silver(np.random.default_rng(11), history, update, users, new_day, 1, hours))
    result = run_pipeline(warehouse, lake, serving)
    shutil.rmtree(scratch, ignore_errors=True)
    result["update compute"] = sum(value for part, value in result.items() if not part.startswith("mart "))
    result["no-op run"] = sum(value for part, value in noop.items() if not part.startswith("mart "))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=int, nargs="+", default=[1_000_000, 50_000_000])
    parser.add_argument("--update", type=int, default=1_000_000, help="events of the new day")
    parser.add_argument("--users", type=int, default=100_000, help="the user pool, the same for every history")
    parser.add_argument("--workdir", type=Path, default=None, help="where the lakes go (default: a temp dir)")
    parser.add_argument("--rounds", type=int, default=3, help="update rounds per history (medians reported)")
    parser.add_argument("--days", type=int, default=DAYS, help="days the history spreads over")
    parser.add_argument(
        "--same-day",
        action="store_true",
        help="the update lands on the history's last day, after its events (a micro-batch into a day "
        "that already holds the history's rows: the hot path's through a day), not on a new day",
    )
    args = parser.parse_args()
    new_day = FIRST_DAY + timedelta(days=args.days - 1 if args.same_day else args.days)
    # Same day: the history's events fill 00:00-22:00 and the micro-batch's come after, 22:00-24:00.
    history_hours, update_hours = ((0.0, 22.0), (22.0, 24.0)) if args.same_day else ((0.0, 24.0), (0.0, 24.0))
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench_gold_"))
    results: dict[int, dict[str, float]] = {}
    for history in args.histories:
        root = base / f"h{history}"
        shutil.rmtree(root, ignore_errors=True)
        results[history] = build(history, args.users, args.days, history_hours, root)
        print(f"{datetime.now(UTC):%H:%M:%S} history {history:,}: built", file=sys.stderr, flush=True)
    # Rounds alternate the histories, so a slow spell of the machine hits both; medians are reported.
    rounds: dict[int, list[dict[str, float]]] = {history: [] for history in args.histories}
    for round_number in range(args.rounds):
        for history in args.histories:
            rounds[history].append(
                # A fresh path per round: the lake caches a table's versions by URI for the process's life.
                measure_update(
                    history,
                    args.update,
                    args.users,
                    new_day,
                    update_hours,
                    base / f"h{history}",
                    base / f"round{round_number}-h{history}",
                )
            )
            print(
                f"{datetime.now(UTC):%H:%M:%S} round {round_number + 1}, history {history:,}: "
                f"update compute {rounds[history][-1]['update compute']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    for history in args.histories:
        runs = rounds[history]
        results[history] |= {part: statistics.median(run[part] for run in runs) for part in runs[0]}
        shutil.rmtree(base / f"h{history}", ignore_errors=True)
    small, large = args.histories[0], args.histories[-1]
    rows = [
        "update compute",
        "person state",
        "marts",
        "checks",
        "retention",
        "data_quality",
        "snapshot",
        "no-op run",
        "initial build",
        "initial build: person state",
        "write history",
        "peak RSS (GB)",
        *(f"mart {name}" for name in INCREMENTAL),
    ]
    what = (
        f"{args.update:,} events on the history's last day"
        if args.same_day
        else f"One new day of {args.update:,} events"
    )
    print(f"\n{what} ({args.days} days of history); seconds (2 cores), medians of {args.rounds} rounds\n")
    print(f"| part | {small:,} history | {large:,} history | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        a, b = results[small][row], results[large][row]
        print(f"| {row} | {a:.2f} | {b:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
