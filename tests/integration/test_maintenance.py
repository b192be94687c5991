"""Table maintenance on real Delta tables: compaction of closed partitions, log expiry and vacuum
bounded by a consumer's watermark, and what change-feed readers see across them."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import Env
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.history import change_stream
from warehouse.lake.maintenance import checkpoint, compact_closed, expire_log, purge_history, table_state, vacuum
from warehouse.lake.tables import RAW_EVENTS

pytestmark = pytest.mark.integration

YESTERDAY, TODAY = date(2024, 1, 1), date(2024, 1, 2)


def bronze(day: date, *uuids: str) -> pa.Table:
    ctx = RequestContext(received_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    rows = [r for u in uuids for r in explode_payload({"uuid": u, "timestamp": 0}, ctx)]
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


def files_by_day(env: Env) -> dict[str, int]:
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    days = pa.table(dt.get_add_actions(flatten=True))["partition.received_date"].to_pylist()
    return {str(day): days.count(day) for day in sorted(set(days))}


def ids(env: Env, after: int, until: int) -> list[str]:
    return sorted(
        change_stream(env.lake, RAW_EVENTS, after, until, columns=["event_id"]).read_all()["event_id"].to_pylist()
    )


def test_compaction_rewrites_closed_partitions_only_and_feed_readers_skip_it(env: Env) -> None:
    for i in range(3):
        env.lake.append(RAW_EVENTS, bronze(YESTERDAY, f"y{i}"))
    watermark = env.lake.append(RAW_EVENTS, bronze(TODAY, "t0"))
    env.lake.append(RAW_EVENTS, bronze(TODAY, "t1"))
    assert files_by_day(env) == {"2024-01-01": 3, "2024-01-02": 2}

    assert compact_closed(env.lake, RAW_EVENTS, TODAY, 64 * 1024 * 1024) == ["2024-01-01"]
    compacted = env.lake.version(RAW_EVENTS)
    assert compacted is not None
    assert files_by_day(env) == {"2024-01-01": 1, "2024-01-02": 2}
    assert env.lake.dataset(RAW_EVENTS).count_rows() == 5
    # A consumer at `watermark` reads t1 once, and nothing from the compaction commit.
    assert ids(env, watermark, compacted) == sorted(bronze(TODAY, "t1")["event_id"].to_pylist())
    assert ids(env, compacted - 1, compacted) == []
    assert compact_closed(env.lake, RAW_EVENTS, TODAY, 64 * 1024 * 1024) == []  # nothing left to do


def test_log_expiry_keeps_what_a_consumer_behind_needs(env: Env) -> None:
    versions = [env.lake.append(RAW_EVENTS, bronze(TODAY, f"e{i}")) for i in range(4)]
    early = checkpoint(env.lake, RAW_EVENTS)  # a checkpoint at v3
    later = [env.lake.append(RAW_EVENTS, bronze(TODAY, f"f{i}")) for i in range(3)]
    checkpoint(env.lake, RAW_EVENTS)  # and one at the latest version
    consumer = versions[-1] + 1  # has read up to the first of `later`: after the early checkpoint

    # Nothing is old enough for a day's retention.
    assert expire_log(env.lake, RAW_EVENTS, consumer, timedelta(days=1)) == 0
    # Without retention: only what precedes the last checkpoint at or before the consumer goes.
    assert expire_log(env.lake, RAW_EVENTS, consumer, timedelta(0)) > 0
    assert early == versions[-1]
    assert ids(env, consumer, later[-1]) == sorted(bronze(TODAY, "f1", "f2")["event_id"].to_pylist())
    assert env.lake.open(RAW_EVENTS, version=consumer) is not None
    # A rebuild (a feed from the start) reads the table and still sees every row.
    assert len(ids(env, -1, later[-1])) == 7


def test_vacuum_keeps_the_files_a_consumer_behind_still_reads(env: Env) -> None:
    for i in range(2):
        env.lake.append(RAW_EVENTS, bronze(YESTERDAY, f"y{i}"))
    consumer = env.lake.version(RAW_EVENTS)
    assert consumer is not None
    env.lake.append(RAW_EVENTS, bronze(YESTERDAY, "y2"))  # after the consumer's watermark
    compact_closed(env.lake, RAW_EVENTS, TODAY, 64 * 1024 * 1024)  # removes y2's file too
    latest = env.lake.version(RAW_EVENTS)
    assert latest is not None

    # The consumer has not read y2's version: its file stays, however short the retention.
    assert vacuum(env.lake, RAW_EVENTS, consumer, timedelta(0)) == []
    assert ids(env, consumer, latest) == sorted(bronze(YESTERDAY, "y2")["event_id"].to_pylist())
    # Once every consumer is at the latest version, the compacted files go.
    assert len(vacuum(env.lake, RAW_EVENTS, latest, timedelta(0))) == 3
    state = table_state(env.lake, RAW_EVENTS)
    assert state is not None and state.files == 1 and state.version == latest  # the vacuum commits nothing
    assert env.lake.dataset(RAW_EVENTS).count_rows() == 3


def test_vacuum_finds_removed_files_the_checkpoints_forgot_and_spares_young_ones(env: Env) -> None:
    # Regression: checkpoints kept a week of tombstones (delta's default): at 20 commits/s every
    # auto compaction of bronze grew slower with its age (200 ms -> 590 ms from 1,000 to 7,000
    # versions). Tombstones now stay a minute; the vacuum lists storage instead.
    assert env.lake.ensure(RAW_EVENTS).metadata().configuration["delta.deletedFileRetentionDuration"] == (
        "interval 1 minute"
    )
    for i in range(3):
        env.lake.append(RAW_EVENTS, bronze(YESTERDAY, f"y{i}"))
    compact_closed(env.lake, RAW_EVENTS, TODAY, 64 * 1024 * 1024)
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    dt.alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 0 seconds"})
    latest = checkpoint(env.lake, RAW_EVENTS)  # a checkpoint without the compaction's tombstones
    assert latest is not None and expire_log(env.lake, RAW_EVENTS, latest, timedelta(0)) > 0
    fresh = env.lake.open(RAW_EVENTS)
    assert fresh is not None  # delta-rs's lite vacuum no longer sees the compacted-away files
    assert fresh.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=True) == []
    table_dir = Path(env.lake.uri(RAW_EVENTS))
    old, young = table_dir / "received_date=2024-01-01" / "failed-write.parquet", table_dir / "in-flight.parquet"
    for leftover in (old, young):
        leftover.write_bytes(b"PAR1")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))

    # Files younger than the margin stay (a writer's before its commit; the compacted-away ones too).
    assert vacuum(env.lake, RAW_EVENTS, latest, timedelta(hours=1)) == ["received_date=2024-01-01/failed-write.parquet"]
    assert young.exists() and not old.exists()
    vacuumed = vacuum(env.lake, RAW_EVENTS, latest, timedelta(0))
    assert len(vacuumed) == 3 and young.exists()  # written after the floor's commit: a later version's, maybe
    assert files_by_day(env) == {"2024-01-01": 1}
    assert env.lake.dataset(RAW_EVENTS).count_rows() == 3


def test_purge_waits_for_a_compaction_of_the_table(env: Env) -> None:
    # Regression: purge_history ran delta-rs's full vacuum, which deletes every file the snapshot
    # does not name, whatever its age: the files of a compaction writing meanwhile (maintain_lake
    # beside a rescrub) would have been deleted before their commit. It now holds the rewrite lock.
    for i in range(3):
        env.lake.append(RAW_EVENTS, bronze(YESTERDAY, f"y{i}"))
    done = threading.Event()
    with env.lake.rewrite_lock(RAW_EVENTS):
        purge = threading.Thread(target=lambda: (purge_history(env.lake, RAW_EVENTS), done.set()))
        purge.start()
        assert not done.wait(1.0)  # blocked while the lock is held
    assert done.wait(30)
    purge.join()
    assert env.lake.dataset(RAW_EVENTS).count_rows() == 3
