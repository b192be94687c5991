"""Chart-data latency through Superset's API on the serving snapshot: p50/p95 per chart.

For each snapshot (the bundled samples, and gold built from N generated events) and each
results-cache setting (off = the project default, on = EVENTLAKE_SUPERSET_CACHE=simple), starts a
real Superset from .venv-superset on a free loopback port, provisions the bundle against that
snapshot and requests every chart's /api/v1/chart/<id>/data/ --repeat times after one uncounted warm-up request,
printing one table.

Usage:
  .venv/bin/python bench/bench_superset.py --samples-snapshot data/serving/serving.duckdb --events 10000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dashboards import service  # noqa: E402
from pipelines.data_quality import refresh_data_quality  # noqa: E402
from pipelines.gold import refresh_mart  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.test_superset import login  # noqa: E402
from warehouse import gold  # noqa: E402
from warehouse.lake.store import Lake  # noqa: E402
from warehouse.lake.tables import EVENTS  # noqa: E402
from warehouse.marts import catalog  # noqa: E402
from warehouse.serving import pipeline_freshness, publish_snapshot  # noqa: E402


def generated_snapshot(events: int, folder: Path, chunk: int = 1_000_000) -> Path:
    """Gold + snapshot from ``events`` synthetic silver rows: 3 apps, 365 days, 200k people,
    40 event types, 2,000 pages, 5% bots (written straight to silver; gold built by the pipeline's code)."""
    lake = Lake(str(folder / "lake"))
    rng = np.random.default_rng(7)
    types = np.array(["page_view"] * 20 + [f"action_{i}" for i in range(20)])
    for offset in range(0, events, chunk):
        n = min(chunk, events - offset)
        seconds = rng.integers(0, 365 * 86400, n)
        timestamps = pa.array(
            (np.datetime64("2025-01-01T00:00:00") + seconds.astype("timedelta64[s]")).astype("datetime64[us]"),
            pa.timestamp("us", tz="UTC"),
        )
        columns = {
            "event_id": pa.array([f"g{offset + i}" for i in range(n)]),
            "event_type": pa.array(types[rng.integers(0, len(types), n)]),
            "app": pa.array(np.array(["shop", "blog", "docs"])[rng.integers(0, 3, n)]),
            "source": pa.array(["web"] * n),
            "source_format": pa.array(["native"] * n),
            "timestamp": timestamps,
            "event_date": pa.compute.cast(timestamps, pa.date32()),
            "received_at": timestamps,
            "user_id": pa.array(np.char.add("u", rng.integers(0, 200_000, n).astype(str))),
            "page_url": pa.array(np.char.add("https://example.com/p/", rng.integers(0, 2_000, n).astype(str))),
            "properties": pa.array(["{}"] * n),
            "is_bot": pa.array(rng.random(n) < 0.05),
            "bronze_version": pa.array(np.zeros(n, dtype=np.int64)),
        }
        table = pa.table(
            {
                name: columns.get(name, pa.nulls(n, field.type))
                for name, field in zip(EVENTS.schema.names, EVENTS.schema, strict=True)
            },
            schema=EVENTS.schema,
        )
        lake.append(EVENTS, table)
    con = gold.connect(folder / "warehouse.duckdb")
    marts = catalog()
    for name, mart in marts.items():
        if mart.spec.kind == "incremental":
            refresh_mart(con, lake, name)
    refresh_data_quality(con, lake, marts["data_quality_daily"])
    target = folder / "serving" / "serving.duckdb"
    publish_snapshot(con, target, marts, {"pipeline_freshness": pipeline_freshness(con, lake)})
    con.close()
    return target


def measure(snapshot: Path, cache: str, repeat: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = {**service.environment(data_dir), "EVENTLAKE_SUPERSET_CACHE": cache}
        account = service.admin(data_dir)
        log = data_dir / "superset.log"
        service.initialize(env, account, log)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(service.start_args(port), env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            service.wait_healthy(url, 180, proc)
            service.provision(env, account, url, snapshot, log)
            session = login(url, account)
            charts = session.get("/api/v1/chart/", params={"q": "(columns:!(id,slice_name),page_size:100)"})
            timings: dict[str, list[float]] = {}
            for chart in charts.json()["result"]:
                session.get(f"/api/v1/chart/{chart['id']}/data/")  # warm-up, not counted (first query opens the file)
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    response = session.get(f"/api/v1/chart/{chart['id']}/data/")
                    samples.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text[:300]
                timings[chart["slice_name"]] = samples
            return timings
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples-snapshot", type=Path, default=Path("data/serving/serving.duckdb"))
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    os.environ.pop("SUPERSET_ADMIN_USER", None)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generated = generated_snapshot(args.events, Path(tmp))
        build_s = time.perf_counter() - started
        runs = {}
        for label, snapshot in (("samples", args.samples_snapshot), (f"{args.events:,} events", generated)):
            for cache in ("", "simple"):
                runs[(label, "off" if not cache else "on")] = measure(snapshot, cache, args.repeat)
    print(
        f"chart data latency through Superset's API, {args.repeat} requests per chart (ms); "
        f"generated gold + snapshot built in {build_s:.0f} s"
    )
    charts = list(next(iter(runs.values())))
    header = "".join(f"{f'{label} cache {cache}':>34}" for label, cache in runs)
    print(f"{'chart':<48}{header}")
    print(f"{'':<48}" + "".join(f"{'p50':>17}{'p95':>17}" for _ in runs))
    for chart in charts:
        cells = ""
        for timings in runs.values():
            values = sorted(timings[chart])
            cells += f"{statistics.median(values):>17.1f}{values[int(len(values) * 0.95) - 1]:>17.1f}"
        print(f"{chart[:47]:<48}{cells}")


if __name__ == "__main__":
    main()
