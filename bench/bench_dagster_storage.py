"""Dagster's storage for the hot path's micro-batches: SQLite files (one machine) against PostgreSQL
(a cluster), side by side.

For each storage, a fresh lake and Dagster instance (the stack's ``dagster.yaml``, with
``scripts/stack_dagster.py``'s Postgres storage for ``postgres``, on a real PostgreSQL 15 from
Debian) get ``--batches`` bronze commits of ``--events`` events each; one ``hot_path`` run then
carries them to gold as that many ``ingest_to_gold`` micro-batches (one commit each), in its
process, as under ``make up``. Per storage it prints the micro-batches' duration (their runs' start
to end, as the UI shows them: median and p95), the event-log rows a micro-batch writes, and the
ratio of the medians; the difference of the medians is what the storage adds to each micro-batch.

Usage: .venv/bin/python bench/bench_dagster_storage.py [--batches 20] [--events 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import postgres_server  # noqa: E402
import stack_dagster  # noqa: E402

from pipelines.defs import build_definitions  # noqa: E402
from warehouse.contract.native import explode_payload  # noqa: E402
from warehouse.contract.rows import RequestContext  # noqa: E402
from warehouse.lake.tables import RAW_EVENTS  # noqa: E402
from warehouse.settings import Settings  # noqa: E402

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def bronze_commit(settings: Settings, prefix: str, events: int) -> int:
    """Append ``events`` page views (users ``u0``…) to bronze in one commit; its version."""
    ctx = RequestContext(received_at=datetime.now(UTC), user_agent=BROWSER, ip="192.0.2.1")
    rows = [
        row
        for i in range(events)
        for row in explode_payload(
            {"uuid": f"{prefix}-{i}", "timestamp": "2024-01-01T00:00:00Z", "user": f"u{i % 50}"}, ctx
        )
    ]
    return settings.lake().append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def measure(storage: str, dsn_url: str | None, args: argparse.Namespace) -> dict[str, float]:
    """One storage: the micro-batches' durations (s) and event-log rows per micro-batch."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        home = data / "dagster"
        home.mkdir()
        if dsn_url:
            os.environ["EVENTLAKE_DAGSTER_POSTGRES_URL"] = dsn_url
        (home / "dagster.yaml").write_text(stack_dagster.dagster_yaml(postgres=dsn_url is not None))
        settings = Settings(data_dir=data)
        instance = dg.DagsterInstance.from_config(str(home))
        instance.upgrade()
        for n in range(args.batches):
            bronze_commit(settings, f"{storage}-{n}", args.events)
        result = (
            build_definitions(settings)
            .resolve_job_def("hot_path")
            .execute_in_process(
                instance=instance,
                run_config={"ops": {"stream_to_gold": {"config": {"poll_interval_s": 0.2, "idle_exit_s": 1}}}},
                raise_on_error=True,
            )
        )
        assert result.success
        records = instance.get_run_records(dg.RunsFilter(job_name="ingest_to_gold"), ascending=True)
        assert len(records) == args.batches, f"{len(records)} micro-batches for {args.batches} commits"
        durations = [record.end_time - record.start_time for record in records if record.end_time and record.start_time]
        log_rows = [len(instance.all_logs(record.dagster_run.run_id)) for record in records]
        instance.dispose()
    ordered = sorted(durations)
    return {
        "median s": statistics.median(durations),
        "p95 s": ordered[max(0, round(0.95 * len(ordered)) - 1)],
        "log rows": statistics.median(log_rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="each storage this many times, alternating")
    args = parser.parse_args()
    os.environ["EVENTLAKE_SILVER_MAX_BATCH_ROWS"] = str(args.events)  # one bronze commit per micro-batch
    pg_root = Path(tempfile.mkdtemp(prefix="eventlake-pg-"))
    server = postgres_server.start(pg_root)
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgres": []}
    try:
        for round_ in range(args.rounds):
            for storage in ("sqlite", "postgres"):
                url = None
                if storage == "postgres":
                    database = f"dagster{round_}"
                    postgres_server.create_database(server, database)
                    url = server.url.rsplit("/", 1)[0] + f"/{database}"
                results[storage].append(measure(storage, url, args))
                print(storage, results[storage][-1], file=sys.stderr, flush=True)
    finally:
        server.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
    print(f"{args.batches} micro-batches of {args.events} events per run, {args.rounds} runs per storage\n")
    print("| storage | micro-batch median s | p95 s | event-log rows per micro-batch |")
    print("|---|---|---|---|")
    medians = {}
    for storage, rows in results.items():
        medians[storage] = statistics.median(row["median s"] for row in rows)
        p95 = statistics.median(row["p95 s"] for row in rows)
        log_rows = statistics.median(row["log rows"] for row in rows)
        print(f"| {storage} | {medians[storage]:.3f} | {p95:.3f} | {log_rows:.0f} |")
    added = medians["postgres"] - medians["sqlite"]
    print(
        f"\npostgres / sqlite: {medians['postgres'] / medians['sqlite']:.2f}x ({added * 1000:+.0f} ms per micro-batch)"
    )


if __name__ == "__main__":
    main()
