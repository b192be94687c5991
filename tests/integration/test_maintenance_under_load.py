"""Maintenance while the real ingest API commits to bronze at more than 20 commits/s and silver's
micro-batches read its change feed: auto compaction of today's partition, compaction of a closed
partition, checkpoints and log expiry all commit, and silver neither skips nor re-reads a commit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import httpx
import pytest

from pipelines.maintenance import MaintenancePolicy, expire_consumed_bronze, maintain_lake
from tests.conftest import Env, materialize_all, start_api
from tests.integration.test_lake_maintenance import append_bronze
from warehouse.contract.rows import event_id_for
from warehouse.lake.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration

POLICY = MaintenancePolicy(
    # The vacuum's margin must exceed an append's write-to-commit time: with 0 it deleted the file of
    # an API worker's append that was written before silver's floor version and committed after it.
    retention=timedelta(minutes=3),
    log_retention=timedelta(0),
    target_file_bytes=64 * 1024 * 1024,
    open_days=0,
)
LOAD_S = 25


def silver_range(result: dg.ExecuteInProcessResult) -> tuple[int, int, int]:
    """``(bronze_from_version, bronze_to_version, bronze_rows)`` of a run's silver micro-batch."""
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(EVENTS.name))
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    return int(meta["bronze_from_version"]), int(meta["bronze_to_version"]), int(meta["bronze_rows"])


def test_maintenance_under_20_commits_per_s_keeps_silver_exact(env: Env, setting) -> None:  # noqa: ANN001
    setting("EVENTLAKE_AUTO_COMPACT_FILES", "20")  # the micro-batches' writers (silver) compact too
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for batch in range(4):  # a closed bronze partition, one file per commit
        append_bronze(env, yesterday, f"old{batch}-", 5)
    # Two workers, as the stack runs the API: two auto compactors of one partition (regression: their
    # compactions once committed side by side, every row of them then stored twice).
    server = start_api(env, {"EVENTLAKE_FLUSH_INTERVAL_MS": "5", "EVENTLAKE_AUTO_COMPACT_FILES": "20"}, workers=2)
    acked: list[str] = []
    halt = threading.Event()

    def client(cid: int) -> None:
        with httpx.Client(headers=server.auth, timeout=30) as http:
            n = 0
            while not halt.is_set():
                now = datetime.now(UTC).isoformat()
                batch = [{"uuid": f"c{cid}-{n}-{j}", "timestamp": now, "user": f"u{cid}"} for j in range(3)]
                response = http.post(f"{server.url}/v1/events", json=batch)
                assert response.status_code == 202, response.text
                acked.extend(event_id_for(str(p["uuid"]), "page_view") for p in batch)
                n += 1

    ranges: list[tuple[int, int, int]] = []
    reports = []
    threads = [threading.Thread(target=client, args=(cid,)) for cid in range(8)]
    try:
        start_version = env.lake.version(RAW_EVENTS) or 0
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - started < LOAD_S:
            ranges.append(silver_range(materialize_all(env)))
            reports.extend(maintain_lake(env.lake, env.serving, POLICY))
            expire_consumed_bronze(env.lake, env.serving, timedelta(0))
        halt.set()
        for thread in threads:
            thread.join()
        load_version = env.lake.version(RAW_EVENTS) or 0
        elapsed = time.monotonic() - started
    finally:
        halt.set()
        server.proc.terminate()
        server.proc.wait(timeout=30)
    while env.lake.watermark(EVENTS.name, RAW_EVENTS.name) < (env.lake.version(RAW_EVENTS) or 0):
        ranges.append(silver_range(materialize_all(env)))

    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    # The log before the consumers' floor is expired, so count versions: at most one in 20 is an
    # auto compaction (it waits for 20 new files), so > 21 versions/s means >= 20 appends/s.
    commits = load_version - start_version
    assert commits / elapsed >= 21, f"{commits} commits in {elapsed:.1f} s"
    assert any(r.table == RAW_EVENTS.name and r.compacted == [str(yesterday.date())] for r in reports)
    assert sum(r.expired_logs for r in reports if r.table == RAW_EVENTS.name) > 0

    # Silver's micro-batches tile bronze's versions: each starts where the previous ended (nothing
    # skipped), and together they read every bronze row once (nothing re-read; compaction adds none).
    assert ranges[0][0] == -1 and ranges[-1][1] >= load_version
    assert all(later[0] == earlier[1] for earlier, later in zip(ranges, ranges[1:], strict=False))
    assert sum(rows for _, _, rows in ranges) == len(acked) + 4 * 5

    silver = env.lake.dataset(EVENTS)
    bronze = env.lake.dataset(RAW_EVENTS)
    con = duckdb.connect()
    con.register("silver", silver)
    con.register("bronze", bronze)
    assert con.execute("select count(*), count(distinct event_id) from silver").fetchone() == (
        len(acked) + 20,
        len(acked) + 20,
    )
    assert set(acked) <= {row[0] for row in con.execute("select event_id from silver").fetchall()}
    today = datetime.now(UTC).date()
    assert con.execute("select count(*), count(distinct event_id) from bronze").fetchone() == (
        len(acked) + 20,
        len(acked) + 20,
    )
    by_literal = con.execute(f"select count(*) from bronze where received_date = date '{today}'").fetchone()
    by_parameter = con.execute("select count(*) from bronze where received_date = ?", [today]).fetchone()
    assert by_literal == by_parameter == (len(acked),)
    closed = con.execute("select count(*) from bronze where received_date = ?", [yesterday.date()]).fetchone()
    assert closed == (20,)
    files_today = [f for f in dt.file_uris() if f"received_date={today}" in f]
    assert len(files_today) < commits / 4  # auto compaction kept today's partition from one file per commit
