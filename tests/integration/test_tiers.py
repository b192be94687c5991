"""Tiers and retention over real Delta tables: a silver partition's move to the cold root, interrupted
after each of its steps, leaves every row exactly once for every reader and finishes when run again;
change feeds do not see moves or expiries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines import reprocess
from pipelines.cli import query
from pipelines.definitions_maintenance import build_maintenance_definitions
from pipelines.defs import build_definitions
from tests.conftest import Env, materialize_all
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake import tiers
from warehouse.lake.history import ChangeFeed, change_stream, changed_partitions
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS
from warehouse.lake.tiers import TierMoveError, expire_older, move_older, move_partition, tiered_lake

pytestmark = pytest.mark.integration

OLD, OLDER, RECENT = date(2024, 1, 2), date(2024, 1, 1), date(2024, 3, 1)


def silver_rows(day: date, ids: list[str], user: str = "u1") -> pa.Table:
    """Silver rows of ``day`` with these event ids (the other columns as a micro-batch leaves them)."""
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    rows = [
        {
            "event_id": event_id,
            "event_type": "page_view",
            "app": "shop",
            "source": "web",
            "source_format": "native",
            "timestamp": at,
            "event_date": day,
            "received_at": at,
            "user_id": user,
            "page_url": f"https://shop.example/{event_id}",
            "is_bot": False,
            "bronze_version": 1,
            "run_id": "r",
            "content_hash": f"h-{event_id}",
        }
        for event_id in ids
    ]
    return pa.Table.from_pylist(rows, schema=EVENTS.schema)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    store = tiered_lake(str(tmp_path / "hot"), str(tmp_path / "cold"), 9, 64)
    store.append(EVENTS, silver_rows(OLDER, ["a1", "a2"]))
    store.append(EVENTS, silver_rows(OLD, ["b1", "b2", "b3"]))
    store.append(EVENTS, silver_rows(RECENT, ["c1"]))
    return store


def ids(lake: Lake, **kwargs: object) -> list[str]:
    """Every event id the union surface reads (sorted, duplicates kept)."""
    return sorted(lake.dataset(EVENTS, **kwargs).to_table(columns=["event_id"])["event_id"].to_pylist())  # type: ignore[arg-type]


def from_start(lake: Lake) -> list[str]:
    """Every event id a first build reads (a feed from the start, as of silver's latest version)."""
    version = lake.version(EVENTS)
    assert version is not None
    return sorted(change_stream(lake, EVENTS, -1, version, columns=["event_id"]).read_all()["event_id"].to_pylist())


ALL = ["a1", "a2", "b1", "b2", "b3", "c1"]


def test_old_partitions_move_and_readers_see_every_row_once(lake: Lake) -> None:
    before = lake.version(EVENTS)
    assert before is not None
    moved = move_older(lake, EVENTS, date(2024, 2, 1))
    assert [(m.partition, m.rows, m.copied) for m in moved] == [("2024-01-01", 2, 2), ("2024-01-02", 3, 3)]
    assert ids(lake) == ALL
    assert ids(lake, cold=False) == ["c1"]
    assert sorted(lake.cold.dataset(EVENTS).to_table()["event_id"].to_pylist()) == ALL[:5]  # type: ignore[union-attr]
    assert from_start(lake) == ALL
    version = lake.version(EVENTS)
    assert ids(lake, version=version, files=(("event_date", "<=", OLD),)) == ALL[:5]
    # A move is no change to a change-feed reader: no deletes, no changed day.
    feed = change_stream(lake, EVENTS, before, version, ("insert", "delete")).read_all()  # type: ignore[arg-type]
    assert feed.num_rows == 0
    assert ChangeFeed(lake, EVENTS, before, version).read(["event_id"], ("insert", "delete")).read_all().num_rows == 0  # type: ignore[arg-type]
    # The cold files are zstd at the configured level.
    cold_files = list((Path(lake.cold.root) / EVENTS.path).rglob("*.parquet"))  # type: ignore[union-attr]
    assert cold_files and all(".zstd." in path.name for path in cold_files)


def test_a_late_event_of_a_cold_day_reaches_cold_on_the_next_move(lake: Lake) -> None:
    move_older(lake, EVENTS, date(2024, 2, 1))
    lake.append(EVENTS, silver_rows(OLD, ["b4"]))
    assert ids(lake) == sorted([*ALL, "b4"])
    assert from_start(lake) == sorted([*ALL, "b4"])
    [report] = move_older(lake, EVENTS, date(2024, 2, 1))
    assert (report.partition, report.rows, report.copied) == ("2024-01-02", 1, 1)
    assert ids(lake) == sorted([*ALL, "b4"])
    assert ids(lake, cold=False) == ["c1"]


class Crash(RuntimeError):
    pass


def crash_after(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the move's step ``name`` (a function of :mod:`warehouse.lake.tiers`, or ``delete``) do its
    work and then crash, as a process killed right after it would."""
    if name == "delete":
        real_delete = Lake.delete_where

        def delete_then_crash(self: Lake, *args: object, **kwargs: object) -> int:
            real_delete(self, *args, **kwargs)  # type: ignore[arg-type]
            raise Crash(name)

        monkeypatch.setattr(Lake, "delete_where", delete_then_crash)
        return
    real = getattr(tiers, name)

    def step_then_crash(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(tiers, name, step_then_crash)


@pytest.mark.parametrize("step", ["_copy", "_verify", "delete"])
def test_a_move_interrupted_after_each_step_leaves_every_row_once_and_finishes_when_run_again(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    with monkeypatch.context() as patched:
        crash_after(patched, step)
        with pytest.raises(Crash):
            move_partition(lake, EVENTS, "2024-01-02")
    # In between: hot and cold may both hold the partition; every reader sees each row once.
    assert ids(lake) == ALL
    assert from_start(lake) == ALL
    assert ids(lake, version=lake.version(EVENTS), files=(("event_date", "=", OLD),)) == ["b1", "b2", "b3"]
    report = move_partition(lake, EVENTS, "2024-01-02")
    assert report.copied == 0  # the interrupted run had copied them
    assert ids(lake) == ALL
    assert ids(lake, cold=False) == ["a1", "a2", "c1"]
    cold_ids = lake.cold.dataset(EVENTS).to_table()["event_id"].to_pylist()  # type: ignore[union-attr]
    assert sorted(cold_ids) == ["b1", "b2", "b3"]


def test_a_move_run_again_after_its_copy_takes_hots_rows_when_hot_changed_since(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lake.cold is not None
    lake.cold.append(EVENTS, silver_rows(OLD, ["b0"], user="someone-else"))  # an event only cold holds
    with monkeypatch.context() as patched:
        crash_after(patched, "_copy")
        with pytest.raises(Crash):
            move_partition(lake, EVENTS, "2024-01-02")
    # Hot's b1 changes before the move runs again (a rescrub, say): hot's version must win in cold.
    changed = pa.concat_tables([silver_rows(OLD, ["b1"], user="u9"), silver_rows(OLD, ["b2", "b3"])])
    lake.replace_where(EVENTS, changed, "event_date = '2024-01-02'")
    assert ids(lake) == sorted([*ALL, "b0"])
    report = move_partition(lake, EVENTS, "2024-01-02")
    assert report.copied == 3
    cold = lake.cold.dataset(EVENTS).to_table(columns=["event_id", "user_id"]).sort_by("event_id").to_pylist()
    assert cold == [
        {"event_id": "b0", "user_id": "someone-else"},
        {"event_id": "b1", "user_id": "u9"},
        {"event_id": "b2", "user_id": "u1"},
        {"event_id": "b3", "user_id": "u1"},
    ]
    assert ids(lake) == sorted([*ALL, "b0"])


def test_a_lost_copy_keeps_the_partition_in_hot(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:  # a store that dropped the write: verify stops the move
        patched.setattr(tiers, "_copy", lambda *args: (0, None))
        with pytest.raises(TierMoveError, match="not deleted"):
            move_partition(lake, EVENTS, "2024-01-02")
    assert ids(lake, cold=False) == ALL
    move_partition(lake, EVENTS, "2024-01-02")
    assert ids(lake, cold=False) == ["a1", "a2", "c1"]
    assert ids(lake) == ALL


def test_late_events_of_a_cold_day_move_without_reading_the_cold_day(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost of moving a day's late events stays flat as the cold day grows: the copy appends and
    the verification reads the copy's own files, never the rows cold already held."""
    assert lake.cold is not None
    move_older(lake, EVENTS, date(2024, 2, 1))
    lake.append(EVENTS, silver_rows(OLD, ["b4", "b5"]))
    read: list[str] = []
    real_dataset = Lake.dataset

    def recording(self: Lake, table: object, *args: object, **kwargs: object) -> object:
        read.append(self.root)
        return real_dataset(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Lake, "dataset", recording)
    report = move_partition(lake, EVENTS, "2024-01-02")
    monkeypatch.undo()
    assert (report.rows, report.copied) == (2, 2)
    assert lake.cold.root not in read  # only hot's partition was read through the union surface
    assert ids(lake) == sorted([*ALL, "b4", "b5"])
    assert ids(lake, cold=False) == ["c1"]
    # A corrupt copy of late events is still caught by the verification of the files it added.
    lake.append(EVENTS, silver_rows(OLD, ["b6"]))
    real_append = Lake.append

    def corrupting(self: Lake, table: object, rows: pa.Table, *args: object, **kwargs: object) -> int:
        if self is lake.cold:
            rows = rows.set_column(rows.schema.get_field_index("user_id"), "user_id", pa.array(["x"] * rows.num_rows))
        return real_append(self, table, rows, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Lake, "append", corrupting)
    with pytest.raises(TierMoveError, match="not deleted"):
        move_partition(lake, EVENTS, "2024-01-02")
    monkeypatch.undo()
    assert ids(lake) == sorted([*ALL, "b4", "b5", "b6"])
    move_partition(lake, EVENTS, "2024-01-02")  # the stopped copy is reconciled: hot's row wins
    cold = lake.cold.dataset(EVENTS).to_table(columns=["event_id", "user_id"]).to_pylist()
    assert sorted(row["event_id"] for row in cold) == ["a1", "a2", "b1", "b2", "b3", "b4", "b5", "b6"]
    assert {row["user_id"] for row in cold} == {"u1"}


def test_a_partition_that_changes_during_the_move_stays_in_hot(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    real_verify = tiers._verify

    def verify_then_late_append(*args: object) -> None:
        real_verify(*args)  # type: ignore[arg-type]
        lake.append(EVENTS, silver_rows(OLD, ["b9"]))

    monkeypatch.setattr(tiers, "_verify", verify_then_late_append)
    with pytest.raises(TierMoveError, match="changed in hot"):
        move_partition(lake, EVENTS, "2024-01-02")
    monkeypatch.undo()
    assert ids(lake) == sorted([*ALL, "b9"])
    move_partition(lake, EVENTS, "2024-01-02")
    assert ids(lake) == sorted([*ALL, "b9"])
    assert "b9" not in ids(lake, cold=False)


def test_expiry_skips_unread_partitions_and_is_no_change_to_readers(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "hot"))
    rows = pa.Table.from_pylist(
        [
            {
                "event_id": f"q-{day}",
                "received_date": day,
                "received_at": datetime(day.year, day.month, day.day, tzinfo=UTC),
            }
            for day in (OLDER, OLD, RECENT)
        ],
        schema=REJECTED_EVENTS.schema,
    )
    for i in range(3):
        lake.append(REJECTED_EVENTS, rows.slice(i, 1))
    latest = lake.version(REJECTED_EVENTS)
    assert latest is not None
    assert expire_older(lake, REJECTED_EVENTS, date(2024, 2, 1), floor=-1) == []  # nobody read anything yet
    # The consumer read up to the first append: its day expires, the second waits for it.
    assert expire_older(lake, REJECTED_EVENTS, date(2024, 2, 1), floor=latest - 2) == ["2024-01-01"]
    assert expire_older(lake, REJECTED_EVENTS, date(2024, 2, 1), floor=latest) == ["2024-01-02"]
    assert lake.dataset(REJECTED_EVENTS).to_table()["event_id"].to_pylist() == ["q-2024-03-01"]
    after = lake.version(REJECTED_EVENTS)
    assert after is not None and after == latest + 4  # each expiry: its horizon recorded, then the delete
    assert len(changed_partitions(lake, REJECTED_EVENTS, latest, after)) == 0
    assert (
        pc.sum(pc.equal(changed_partitions(lake, REJECTED_EVENTS, -1, after).cast(pa.string()), "2024-03-01")).as_py()
        == 1
    )
    assert expire_older(lake, REJECTED_EVENTS, datetime.now(UTC).date() + timedelta(days=1), floor=None) == [
        "2024-03-01"
    ]


def append_bronze(env: Env, events: list[tuple[str, str, str]]) -> int:
    """Bronze rows of native payloads ``(payload uuid, client timestamp, user)``, one page view each."""
    ctx = RequestContext(received_at=datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [
        row
        for uuid, timestamp, user in events
        for row in explode_payload(
            {"uuid": uuid, "timestamp": timestamp, "user": user, "events": {"page_view": {}}}, ctx
        )
    ]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def served(env: Env) -> dict[str, list[tuple[object, ...]]]:
    """Every served mart's rows (sorted; without their lineage, the silver version each row was computed
    from), bookkeeping tables left out."""
    con = duckdb.connect(str(env.serving), read_only=True)
    try:
        names = [name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()]
        served = {}
        for name in names:
            if name in ("pipeline_freshness", "gold_watermarks"):
                continue
            columns = [column for column in con.table(name).columns if column != "silver_version"]
            listed = ", ".join(f'"{column}"' for column in columns)
            served[name] = sorted(con.execute(f'select {listed} from "{name}"').fetchall(), key=repr)
        return served
    finally:
        con.close()


def run_job(env: Env, defs: dg.Definitions, name: str, ops: dict[str, object]) -> dict[str, dict[str, object]]:
    """Run job ``name`` of ``defs`` in-process with ``ops``' config; its observations' metadata by asset."""
    result = defs.resolve_job_def(name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config={"ops": ops}
    )
    assert result.success
    return {
        event.asset_observation_data.asset_observation.asset_key.to_user_string(): {
            key: value.value for key, value in event.asset_observation_data.asset_observation.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }


def dau(env: Env) -> dict[str, int]:
    con = duckdb.connect(str(env.serving), read_only=True)
    try:
        return {
            str(day): n for day, n in con.execute("select day, dau from daily_active_users order by day").fetchall()
        }
    finally:
        con.close()


def test_gold_keeps_moved_days_and_a_late_duplicate_of_a_cold_event_stays_out(env: Env) -> None:
    append_bronze(env, [(f"p{i}", f"2024-03-0{1 + i % 3}T10:00:00Z", f"u{i % 4}") for i in range(12)])
    materialize_all(env)
    before = served(env)
    assert dau(env) == {"2024-03-01": 4, "2024-03-02": 4, "2024-03-03": 4}
    policy = {"hot_days": 30, "cold_days": 0, "bronze_ttl_days": 0, "quarantine_ttl_days": 0}
    observed = run_job(env, build_definitions(env.settings()), "tier_lake", {"tier_partitions": {"config": policy}})
    assert env.lake.dataset(EVENTS, cold=False).count_rows() == 0
    silver = observed["events"]
    assert (silver["moved_partitions"], silver["moved_rows"], silver["hot_files"]) == (3, 12, 0)
    assert silver["cold_files"] == 3 and silver["cold_bytes"] > 0  # a file per day
    maintenance = {
        "maintain_tables": {
            "config": {"retention_h": 0.05, "log_retention_minutes": 0, "target_file_mb": 64, "silver_open_days": 0}
        },
        "prune_dagster_runs": {"config": {"run_retention_days": 7}},
    }
    observed = run_job(env, build_maintenance_definitions(env.settings()), "maintain_lake", maintenance)
    assert observed["events"]["cold_files_after"] == 3
    materialize_all(env)
    assert served(env) == before  # a move is no change to gold
    # A retried event of a cold day (same payload uuid) is a duplicate; a new one of that day counts.
    append_bronze(env, [("p0", "2024-03-01T10:00:00Z", "u0"), ("late", "2024-03-01T11:00:00Z", "u9")])
    materialize_all(env)
    assert sorted(env.lake.dataset(EVENTS, cold=False).to_table()["user_id"].to_pylist()) == ["u9"]
    assert env.lake.dataset(EVENTS).count_rows() == 13
    after = served(env)
    assert dau(env) == {"2024-03-01": 5, "2024-03-02": 4, "2024-03-03": 4}  # u9 joined 2024-03-01's 4 people
    # Gold built from scratch over both tiers equals the incremental one.
    env.warehouse.unlink()
    env.serving.unlink()
    materialize_all(env)
    assert served(env) == after


def test_eventlake_query_reads_both_tiers_once(
    env: Env, setting: Callable[[str, str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    setting("EVENTLAKE_DATA_DIR", str(env.data_dir))
    lake = env.lake
    lake.append(EVENTS, silver_rows(OLD, ["b1", "b2"]))
    lake.append(EVENTS, silver_rows(RECENT, ["c1"]))
    move_older(lake, EVENTS, date(2024, 2, 1))
    assert query.main(["select event_date, count(*) as n from events group by 1 order by 1", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ['"event_date","n"', "2024-01-02,2", "2024-03-01,1"]
    assert query.main(["select count(*) as events from events"]) == 0
    assert "│ 3 " in capsys.readouterr().out
    assert query.main(["select nope from events"]) == 2
    assert 'Referenced column "nope" not found' in capsys.readouterr().err


def test_reprocessing_refuses_events_bronze_no_longer_holds(lake: Lake) -> None:
    move_older(lake, EVENTS, date(2024, 2, 1))
    with pytest.raises(ValueError, match="cold tier"):
        reprocess._refuse_expired(lake, OLD, RECENT)
    reprocess._refuse_expired(lake, RECENT, RECENT)  # nothing expired yet
    # Bronze's retention deleted what it received before 2024-03-01 (silver_rows: received at noon that day).
    bronze = pa.Table.from_pylist(
        [{"event_id": "x", "received_date": date(2024, 2, 28), "received_at": datetime(2024, 2, 28, tzinfo=UTC)}],
        schema=RAW_EVENTS.schema,
    )
    lake.append(RAW_EVENTS, bronze)
    assert expire_older(lake, RAW_EVENTS, date(2024, 3, 1), floor=None) == ["2024-02-28"]
    assert tiers.expired_before(lake, RAW_EVENTS) == "2024-02-29"
    reprocess._refuse_expired(lake, RECENT, RECENT)  # c1 was received on 2024-03-01: bronze still has it
    lake.append(
        RAW_EVENTS,
        bronze.set_column(
            bronze.schema.get_field_index("received_date"), "received_date", pa.array([date(2024, 3, 1)], pa.date32())
        ),
    )
    assert expire_older(lake, RAW_EVENTS, date(2024, 3, 2), floor=None) == ["2024-03-01"]
    with pytest.raises(ValueError, match="1 events of 2024-03-01..2024-03-01 were received before 2024-03-02"):
        reprocess._refuse_expired(lake, RECENT, RECENT)


def test_an_event_resent_after_its_day_expired_is_not_counted_again(env: Env) -> None:
    """Regression (found by a new user's trial): the expiry of cold days removed their ids from the
    key index, so replaying the samples after it added every expired event again and doubled gold."""
    append_bronze(env, [(f"p{i}", "2024-03-01T10:00:00Z", f"u{i}") for i in range(3)])
    materialize_all(env)
    before = served(env)
    policy = {"hot_days": 30, "cold_days": 40, "bronze_ttl_days": 0, "quarantine_ttl_days": 0}
    observed = run_job(env, build_definitions(env.settings()), "tier_lake", {"tier_partitions": {"config": policy}})
    assert observed["events"]["expired_cold_partitions"] == 1
    assert env.lake.dataset(EVENTS).count_rows() == 0
    append_bronze(env, [(f"p{i}", "2024-03-01T10:00:00Z", f"u{i}") for i in range(3)])  # the same events again
    result = materialize_all(env)
    assert env.lake.dataset(EVENTS).count_rows() == 0
    assert result.asset_materializations_for_node("silver_events")[0].metadata["beyond_retention_rows"].value == 3
    after = served(env)
    assert {mart: rows for mart, rows in after.items() if mart != "data_quality_daily"} == {
        mart: rows for mart, rows in before.items() if mart != "data_quality_daily"
    }
    # Data quality counts the resent copies as duplicates, as a replay before the expiry would.
    assert [row[3:6] for row in after["data_quality_daily"]] == [("duplicate", "", 3), ("valid", "", 3)]


def test_a_cold_horizon_that_deletes_days_as_they_move_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cold_days \(30\) must be more than hot_days \(90\)"):
        tiers.TierPolicy(hot_days=90, cold_days=30, bronze_ttl_days=14, quarantine_ttl_days=90)
    assert tiers.TierPolicy(hot_days=90, cold_days=0, bronze_ttl_days=14, quarantine_ttl_days=90).cold_days == 0


def test_a_move_between_a_readers_hot_and_cold_reads_shows_each_row_once(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (found by breaking it): a reader of the latest version built the hot rows, then
    opened the cold tier and read hot again to find the days both hold; a move in between showed its
    day twice (eventlake-query counted 1,025 rows of 1,000 ids)."""
    from warehouse.lake import store as store_module

    union = store_module.tier_union

    def move_then_union(*args: object, **kwargs: object) -> object:
        move_partition(lake, EVENTS, OLD.isoformat())  # copied to cold and deleted from hot
        return union(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "tier_union", move_then_union)
    assert ids(lake) == ["a1", "a2", "b1", "b2", "b3", "c1"]


def test_a_filter_on_statistics_over_a_day_both_tiers_hold_reads_its_rows(lake: Lake) -> None:
    """Regression: a day in both tiers whose hot files the filter leaves out made ``isin`` of an empty
    key list fail (string vs null)."""
    move_partition(lake, EVENTS, OLD.isoformat())
    lake.append(EVENTS, silver_rows(OLD, ["late"]))
    version = lake.version(EVENTS)
    not_late = (("event_id", "<", "c"),)  # by statistics: the hot file (only "late") is left out
    assert ids(lake, version=version, files=not_late) == ["a1", "a2", "b1", "b2", "b3"]


@pytest.mark.parametrize("cold", ["{hot}", "{hot}/", "file://{hot}", "{hot}/silver/events/cold"])
def test_a_cold_root_that_overlaps_the_hot_one_is_refused(tmp_path: Path, cold: str) -> None:
    hot = str(tmp_path / "lake")
    with pytest.raises(ValueError, match="overlap"):
        tiered_lake(hot, cold.format(hot=hot), 9, 64)
