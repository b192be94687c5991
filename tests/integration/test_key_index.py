"""Silver's key index (RocksDB) on a real silver Delta table: it follows appends and rewrites through
the change feed, rebuilds when the feed cannot serve it, survives a crash at any point, and silver's
dedup answers the same with it, without it, and while another process holds it."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from pipelines.silver import prior_hashes, silver_ids
from tests.conftest import Env
from warehouse.lake.key_index import IndexBusyError, KeyIndex, shared_key_index
from warehouse.lake.maintenance import checkpoint, expire_log, purge_history
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS
from warehouse.lake.tiers import expire_older, move_older

pytestmark = pytest.mark.integration

DAY = date(2024, 1, 1)


def silver(ids: list[str], tag: str = "h", day: date = DAY) -> pa.Table:
    """Silver rows with these ids (content_hash ``<tag>-<id>``), every other column null."""
    columns = {field.name: pa.nulls(len(ids), field.type) for field in EVENTS.schema}
    columns["event_id"] = pa.array(ids, pa.string())
    columns["content_hash"] = pa.array([f"{tag}-{i}" for i in ids], pa.string())
    columns["event_date"] = pa.array([day] * len(ids), pa.date32())
    return pa.table(columns, schema=EVENTS.schema)


@pytest.fixture
def index(env: Env) -> Iterator[KeyIndex]:
    opened = KeyIndex.open(env.data_dir / "index", env.lake, EVENTS, "event_id", "content_hash")
    yield opened
    opened.close()


def found(index: KeyIndex, ids: list[str]) -> dict[str, str]:
    rows = index.lookup(pa.array(ids, pa.string()))
    return dict(zip(rows["event_id"].to_pylist(), rows["content_hash"].to_pylist(), strict=True))


def test_follows_appends_and_rewrites_through_the_change_feed(env: Env, index: KeyIndex) -> None:
    assert index.sync() == -1 and found(index, ["a"]) == {}  # no silver yet
    first = env.lake.append(EVENTS, silver(["a", "b"]))
    assert index.sync() == first and index.covered() is not None
    env.lake.append(EVENTS, silver(["c"], day=DAY + timedelta(days=1)))
    env.lake.append(EVENTS, silver(["d"]))
    # A rewrite of one day (reprocess, rescrub): "a" rewritten with a new hash, "b" gone, "d" kept.
    env.lake.replace_where(EVENTS, silver(["a", "d"], tag="new"), f"event_date = '{DAY}'")
    latest = env.lake.version(EVENTS)
    assert index.sync() == latest
    assert found(index, ["a", "b", "c", "d", "zz", "a"]) == {"a": "new-a", "c": "h-c", "d": "new-d"}
    covered = index.covered()
    assert covered is not None and covered[0].version == latest


def test_rebuilds_when_the_feed_is_gone_or_the_table_was_recreated(env: Env, index: KeyIndex) -> None:
    env.lake.append(EVENTS, silver(["a"]))
    index.sync()
    for i in range(3):
        env.lake.append(EVENTS, silver([f"x{i}"]))
    latest = checkpoint(env.lake, EVENTS)
    assert latest is not None and expire_log(env.lake, EVENTS, latest, timedelta(0)) > 0  # the feed after v0 is gone
    assert index.sync() == latest
    assert set(found(index, ["a", "x0", "x1", "x2"])) == {"a", "x0", "x1", "x2"}

    # The whole table overwritten (same table id): the feed says what went.
    env.lake.overwrite(EVENTS, silver(["fresh"]))
    assert index.sync() == env.lake.version(EVENTS) and set(found(index, ["a", "x0", "fresh"])) == {"fresh"}
    # An index built for another table at this path (silver deleted and created again): rebuilt.
    index._db.put(b"m", json.dumps({"version": 0, "table_id": "another table"}).encode())
    index._db.put(b"kghost", b"h-ghost")
    assert index.sync() == env.lake.version(EVENTS) and found(index, ["ghost", "fresh"]) == {"fresh": "h-fresh"}


def test_a_crash_during_a_rebuild_or_a_sync_is_repaired_by_the_next_one(env: Env) -> None:
    first = env.lake.append(EVENTS, silver(["a", "b"]))
    path = env.data_dir / "index"
    index = KeyIndex.open(path, env.lake, EVENTS, "event_id", "content_hash")
    index._db.put(b"ka", b"stale")  # a rebuild that died before writing its covered version
    assert index.covered() is None
    assert index.sync() == first and found(index, ["a", "b"]) == {"a": "h-a", "b": "h-b"}
    index.close()
    second = env.lake.append(EVENTS, silver(["c"]))
    # A process killed between silver's commit and the index's write batch: the next sync applies it.
    index = KeyIndex.open(path, env.lake, EVENTS, "event_id", "content_hash")
    assert found(index, ["c"]) == {}
    assert index.sync() == second and found(index, ["c"]) == {"c": "h-c"}
    index.close()
    (path / "CURRENT").write_text("garbage\n")  # RocksDB's own files damaged: removed and rebuilt
    index = KeyIndex.open(path, env.lake, EVENTS, "event_id", "content_hash")
    assert index.covered() is None and index.sync() == second and len(found(index, ["a", "b", "c"])) == 3
    index.close()


def _dedup_in_another_process(lake_root: str, ids: list[str], out: Any) -> None:
    lake = Lake(lake_root)
    try:
        KeyIndex(lake.local_dir("index") / EVENTS.name, lake, EVENTS, "event_id", "content_hash")
        out.put("index opened")
    except IndexBusyError:
        out.put(sorted(silver_ids(lake, pl.Series("event_id", ids))["event_id"].to_list()))


def test_silver_dedup_answers_the_same_from_the_index_and_while_another_process_holds_it(env: Env) -> None:
    env.lake.append(EVENTS, silver(["a", "b"]))
    env.lake.append(EVENTS, silver(["c"]))
    batch = pl.Series("event_id", ["a", "c", "new", "a"])
    expected = prior_hashes(env.lake, batch).sort("event_id")
    assert expected["event_id"].to_list() == ["a", "c"]
    assert silver_ids(env.lake, batch).sort("event_id").equals(expected)
    path = env.lake.local_dir("index") / EVENTS.name
    index = shared_key_index(path, env.lake, EVENTS, "event_id", "content_hash")
    assert shared_key_index(path, env.lake, EVENTS, "event_id", "content_hash") is index  # kept open

    env.lake.append(EVENTS, silver(["new"]))
    assert silver_ids(env.lake, batch).sort("event_id")["event_id"].to_list() == ["a", "c", "new"]
    # This process holds the index: another one scans silver instead, with the same answer.
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    other = context.Process(target=_dedup_in_another_process, args=(env.lake_root, batch.to_list(), out))
    other.start()
    assert out.get(timeout=120) == ["a", "c", "new"]
    other.join(60)


def test_a_purge_or_a_recreated_table_rebuilds_and_nulls_stay_null(env: Env, index: KeyIndex) -> None:
    # Regressions (found by trying to break it): after a purge the feed's files are gone and delta-rs
    # raised ArrowInvalid, which sync did not catch: every micro-batch failed until the index was
    # deleted by hand. A NULL content_hash came back as "" (a conflict where the scan saw none).
    env.lake.append(EVENTS, silver(["a", "b"]))
    index.sync()
    hash_column = EVENTS.schema.get_field_index("content_hash")
    rows = silver(["a", "n"]).set_column(hash_column, "content_hash", pa.nulls(2, pa.string()))
    env.lake.replace_where(EVENTS, rows, f"event_date = '{DAY}'")
    purge_history(env.lake, EVENTS)
    nulls = pa.array([None, "x"], pa.string())
    env.lake.append(EVENTS, silver(["z"]).set_column(0, "event_id", pa.array([None], pa.string())))  # a NULL id
    assert index.sync() == env.lake.version(EVENTS)
    assert found(index, ["a", "b", "n"]) == {"a": None, "n": None}
    assert (
        silver_ids(env.lake, pl.Series("event_id", ["a", "n"]))
        .sort("event_id")
        .equals(prior_hashes(env.lake, pl.Series("event_id", ["a", "n"])).sort("event_id"))
    )
    assert index.lookup(nulls).num_rows == 0

    shutil.rmtree(env.lake.uri(EVENTS))  # silver deleted and created again while the process lives
    recreated = env.lake.append(EVENTS, silver(["other"]))
    assert index.sync() == recreated and found(index, ["a", "n", "other"]) == {"other": "h-other"}


def test_keys_moved_to_the_cold_tier_stay_and_those_it_expires_leave(env: Env) -> None:
    lake = env.lake
    path = env.data_dir / "index"
    index = KeyIndex.open(path, lake, EVENTS, "event_id", "content_hash")
    try:
        lake.append(EVENTS, silver(["a", "b"]))
        lake.append(EVENTS, silver(["c"], day=DAY + timedelta(days=40)))
        index.sync()
        move_older(lake, EVENTS, DAY + timedelta(days=1))
        assert lake.dataset(EVENTS, cold=False).count_rows() == 1
        index.sync()
        assert found(index, ["a", "b", "c"]) == {"a": "h-a", "b": "h-b", "c": "h-c"}
        assert lake.cold is not None
        expire_older(lake.cold, EVENTS, DAY + timedelta(days=1), floor=None)
        assert index.sync() == lake.version(EVENTS)
        assert found(index, ["a", "b", "c"]) == {"c": "h-c"}
    finally:
        index.close()
    # A rebuild reads both tiers too.
    lake.append(EVENTS, silver(["d"], day=DAY + timedelta(days=2)))
    move_older(lake, EVENTS, DAY + timedelta(days=3))
    shutil.rmtree(path)
    rebuilt = KeyIndex.open(path, lake, EVENTS, "event_id", "content_hash")
    try:
        rebuilt.sync()
        assert found(rebuilt, ["a", "c", "d"]) == {"c": "h-c", "d": "h-d"}
    finally:
        rebuilt.close()
    # Silver's dedup answers the same from the index and from a scan of both tiers.
    ids = pl.Series(["a", "c", "d", "new"])
    assert sorted(silver_ids(lake, ids)["event_id"].to_list()) == ["c", "d"]
    assert sorted(prior_hashes(lake, ids)["event_id"].to_list()) == ["c", "d"]
