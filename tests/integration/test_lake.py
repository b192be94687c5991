"""Lake helpers on real Delta tables: creation properties, change feed ranges, watermarks, dedup."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.conftest import ROOT, Env
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.history import ChangeFeed, change_stream, commit_rows
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS, WATERMARKS, TableDef

pytestmark = pytest.mark.integration


def bronze(*uuids: str) -> pa.Table:
    ctx = RequestContext(received_at=datetime(2024, 1, 1, tzinfo=UTC))
    rows = [r for u in uuids for r in explode_payload({"uuid": u, "timestamp": 0}, ctx)]
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


def test_first_append_creates_the_table_with_change_data_feed(env: Env) -> None:
    # Regression: a table created by its first write lacked delta.enableChangeDataFeed.
    version = env.lake.append(RAW_EVENTS, bronze("a"))
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    assert dt.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    # Log entries expire only through the maintenance job, bounded by the consumers' watermarks.
    assert dt.metadata().configuration.get("delta.enableExpiredLogCleanup") == "false"
    assert dt.metadata().partition_columns == ["received_date"]
    assert change_stream(env.lake, RAW_EVENTS, -1, version).read_all().num_rows == 1


def test_changes_returns_rows_of_the_version_range_only(env: Env) -> None:
    v1 = env.lake.append(RAW_EVENTS, bronze("a", "b"))
    v2 = env.lake.append(RAW_EVENTS, bronze("c"))
    v3 = env.lake.append(RAW_EVENTS, bronze("d", "e", "f"))
    assert change_stream(env.lake, RAW_EVENTS, v1, v3).read_all()["_commit_version"].to_pylist() in (
        [v2, v3, v3, v3],
        [v3, v3, v3, v2],
    )
    assert change_stream(env.lake, RAW_EVENTS, v2, v3).read_all().num_rows == 3
    assert change_stream(env.lake, RAW_EVENTS, v3, v3).read_all().num_rows == 0


def test_watermark_starts_at_minus_one_and_only_moves_forward(env: Env) -> None:
    assert env.lake.watermark("events", "raw_events") == -1
    env.lake.advance_watermark("events", "raw_events", 7, "run-1")
    env.lake.advance_watermark("other", "raw_events", 9, "run-2")
    assert env.lake.watermark("events", "raw_events") == 7


def test_watermarks_keep_one_row_per_consumer_and_upstream(env: Env) -> None:
    # Regression: a row appended per micro-batch grew the table (and every read of it) forever.
    for version in range(5):
        env.lake.advance_watermark("events", "raw_events", version, f"run-{version}")
        env.lake.advance_watermark("it's", "raw_events", 100 + version, "run")
    rows = env.lake.dataset(WATERMARKS).to_table().sort_by("consumer")
    assert rows.select(["consumer", "upstream_version", "run_id"]).to_pylist() == [
        {"consumer": "events", "upstream_version": 4, "run_id": "run-4"},
        {"consumer": "it's", "upstream_version": 104, "run_id": "run"},
    ]
    assert env.lake.watermark("it's", "raw_events") == 104
    assert len(env.lake.open(WATERMARKS).file_uris()) == 2  # type: ignore[union-attr]


def test_a_kept_table_sees_other_writers_commits_and_loses_none(env: Env) -> None:
    # Each Lake keeps bronze open between appends (flat cost): the commits of another Lake (another
    # process, in production) must show in its versions, reads and next appends.
    other = Lake(env.lake.root)
    versions = []
    for i in range(6):
        writer = env.lake if i % 2 == 0 else other
        versions.append(writer.append(RAW_EVENTS, bronze(f"e{i}")))
        assert env.lake.version(RAW_EVENTS) == other.version(RAW_EVENTS) == versions[-1]
    assert versions == list(range(versions[0], versions[0] + 6))
    assert env.lake.dataset(RAW_EVENTS).count_rows() == other.dataset(RAW_EVENTS).count_rows() == 6


def test_insert_new_skips_existing_event_ids_across_partitions(env: Env) -> None:
    rows = bronze("a", "b").append_column("suite", pa.array(["s", "s"]))
    for name in ("failed_expectations", "reason", "reason_type", "run_id"):
        rows = rows.append_column(name, pa.array(["x", "x"]))
    rows = rows.append_column("bronze_version", pa.array([1, 1], pa.int64()))
    rows = rows.append_column("quarantined_at", pa.array([datetime.now(UTC)] * 2, pa.timestamp("us", tz="UTC")))
    assert env.lake.insert_new(REJECTED_EVENTS, rows) == 2
    assert env.lake.insert_new(REJECTED_EVENTS, rows) == 0


def test_string_predicates_push_down_on_tables_written_by_insert_new(env: Env) -> None:
    # Regression: Delta MERGE wrote string_view columns and pushed-down string filters failed
    # ("no kernel matching input types (string, string_view)").
    rows = bronze("a", "b")
    env.lake.insert_new(RAW_EVENTS, rows)
    con = duckdb.connect()
    con.register("bronze", env.lake.dataset(RAW_EVENTS))
    assert con.execute("select count(*) from bronze where event_type = 'page_view'").fetchall() == [(2,)]


def test_a_table_from_an_older_release_gains_the_new_columns_and_keeps_its_rows(env: Env) -> None:
    # Silver written before content_hash existed: the next write adds the column, old rows read NULL.
    old_columns = dict(list(EVENTS.columns.items())[:-1])
    old = TableDef(EVENTS.name, EVENTS.path, old_columns, EVENTS.partition_by, EVENTS.change_data_feed)
    row = {name: None for name in old.schema.names} | {"event_id": "old", "event_date": date(2024, 1, 1)}
    env.lake.append(old, pa.Table.from_pylist([row], schema=old.schema))

    new = {name: None for name in EVENTS.schema.names} | {
        "event_id": "new",
        "event_date": date(2024, 1, 2),
        "content_hash": "h",
    }
    env.lake.append(EVENTS, pa.Table.from_pylist([new], schema=EVENTS.schema))
    rows = env.lake.dataset(EVENTS).to_table(columns=["event_id", "content_hash"]).sort_by("event_id").to_pylist()
    assert rows == [{"event_id": "new", "content_hash": "h"}, {"event_id": "old", "content_hash": None}]
    env.lake.probe(EVENTS)  # readiness accepts the migrated table


def test_a_table_with_unknown_columns_is_refused(env: Env) -> None:
    other = TableDef(
        EVENTS.name, EVENTS.path, {"event_id": EVENTS.columns["event_id"], "mystery": EVENTS.columns["app"]}
    )
    env.lake.ensure(other)
    with pytest.raises(ValueError, match="expected"):
        env.lake.ensure(EVENTS)


def test_commit_rows_reads_the_log_forward_by_file_name_and_lazily(env: Env) -> None:
    """Silver sizes its micro-batches from these counts (regression: they came from delta-rs
    ``history()``, which numbers entries by counting and shifts them when commits land meanwhile)."""
    versions = [env.lake.append(RAW_EVENTS, bronze(*(f"{n}-{i}" for i in range(n)))) for n in (3, 5, 1)]
    assert list(commit_rows(env.lake, RAW_EVENTS, versions[0] - 1, versions[-1])) == list(
        zip(versions, [3, 5, 1], strict=True)
    )
    assert list(commit_rows(env.lake, RAW_EVENTS, versions[-1], versions[-1])) == []

    # A commit is read once per process (it never changes); one not read yet whose file is gone:
    gone = env.lake.append(RAW_EVENTS, bronze("gone"))
    (Path(env.lake.uri(RAW_EVENTS)) / "_delta_log" / f"{gone:020d}.json").unlink()
    commits = commit_rows(env.lake, RAW_EVENTS, versions[0] - 1, gone)
    assert next(commits) == (versions[0], 3)  # a caller that stops early never reads further
    with pytest.raises(FileNotFoundError):
        list(commits)


def test_a_feed_from_the_start_reads_the_table_after_compaction_and_vacuum(env: Env) -> None:
    # Regression: a first build replayed the change feed from version 0, which fails once a vacuum
    # removed the files a compaction replaced (the log entries still name them).
    for i in range(3):
        env.lake.append(RAW_EVENTS, bronze(f"v{i}"))
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    dt.optimize.compact()
    dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    latest = env.lake.version(RAW_EVENTS)
    assert latest is not None
    rows = change_stream(env.lake, RAW_EVENTS, -1, latest, columns=["event_id"]).read_all()
    assert sorted(rows["event_id"].to_pylist()) == sorted(bronze("v0", "v1", "v2")["event_id"].to_pylist())
    assert set(rows["_commit_version"].to_pylist()) == {latest}


def test_a_process_that_read_a_table_exits_cleanly(tmp_path: Path) -> None:
    """Regression: a short process that read a Delta table through the lake and exited aborted about
    once in two ("terminate called without an active exception", exit 134: ``eventlake-erase`` for an
    unknown user, found by a new-user trial): delta-rs's Python-implemented filesystem left pyarrow's
    threaded scan running past the read. Local tables are read through pyarrow's own filesystem."""
    lake = Lake(str(tmp_path / "lake"))
    lake.append(RAW_EVENTS, bronze("a", "b"))
    script = (
        "import sys\n"
        "from warehouse.lake.store import Lake\n"
        "from warehouse.lake.tables import RAW_EVENTS\n"
        f"rows = Lake({str(tmp_path / 'lake')!r}).dataset(RAW_EVENTS).to_table()\n"
        "sys.exit(0 if rows.num_rows else 3)\n"
    )
    codes = [
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120).returncode
        for _ in range(10)
    ]
    assert codes == [0] * 10


def silver_rows(*ids: str) -> pa.Table:
    at = datetime(2024, 1, 1, 12, tzinfo=UTC)
    rows = [
        {
            "event_id": i,
            "event_type": "click",
            "app": "a",
            "source": "web",
            "source_format": "native",
            "timestamp": at,
            "event_date": at.date(),
            "received_at": at,
            "user_id": "u",
            "is_bot": False,
            "bronze_version": 0,
            "run_id": "r",
        }  # fmt: skip
        for i in ids
    ]
    return pa.Table.from_pylist(rows, schema=EVENTS.schema)


def test_surviving_rows_leave_out_what_a_later_commit_of_the_range_deleted(env: Env) -> None:
    # Regression (breaker): an erasure between a micro-batch's silver step and gold's run deleted the
    # person's rows, but gold's first-seen times read the micro-batch's inserts and the person came back.
    v0 = env.lake.append(EVENTS, silver_rows("z"))
    env.lake.append(EVENTS, silver_rows("a", "b"))
    env.lake.append(EVENTS, silver_rows("c"))
    v3 = env.lake.replace_where(EVENTS, EVENTS.schema.empty_table(), "event_id = 'b'")  # an erasure
    feed = ChangeFeed(env.lake, EVENTS, v0, v3)
    assert sorted(feed.read_surviving(["event_id"]).read_all()["event_id"].to_pylist()) == ["a", "c"]
    assert sorted(feed.read(["event_id"]).read_all()["event_id"].to_pylist()) == ["a", "b", "c"]
    # A replacement deletes and inserts in one commit (a rescrub, a reprocess): its rows stay, once.
    v4 = env.lake.replace_where(EVENTS, silver_rows("a", "c", "z"), "event_date = '2024-01-01'")
    surviving = ChangeFeed(env.lake, EVENTS, v0, v4).read_surviving(["event_id"]).read_all()
    assert sorted(zip(surviving["event_id"].to_pylist(), surviving["_commit_version"].to_pylist(), strict=True)) == [
        ("a", v4),
        ("c", v4),
        ("z", v4),
    ]
    assert ChangeFeed(env.lake, EVENTS, -1, v4).read_surviving(["event_id"]).read_all().num_rows == 3
