"""Lake helpers on real Delta tables: creation properties, change feed ranges, watermarks, dedup."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.conftest import Env
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.history import change_stream, commit_rows
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS, TableDef

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

    (Path(env.lake.uri(RAW_EVENTS)) / "_delta_log" / f"{versions[-1]:020d}.json").unlink()
    commits = commit_rows(env.lake, RAW_EVENTS, versions[0] - 1, versions[-1])
    assert next(commits) == (versions[0], 3)  # a caller that stops early never reads further
    with pytest.raises(FileNotFoundError):
        list(commits)
