"""Erasure of a person over real Delta tables (both tiers), real DuckDB files and real Dagster runs:
every row of theirs goes, identity stitching included; gold is recomputed as if they had never been
there; what arrives later is dropped; a crash at any step is finished by running the request again;
and after the vacuum window no file of any table holds their values."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import erasure
from pipelines.cli import erase as erase_cli
from pipelines.definitions_maintenance import build_maintenance_definitions
from pipelines.defs import build_definitions
from pipelines.defs.resources import SilverResource
from tests.conftest import ApiServer, Env, free_port, materialize_all, start_api, stored_text
from tests.integration.test_tiers import dau, run_job, served
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import ERASURE_TOMBSTONES, EVENTS, RAW_EVENTS, REJECTED_EVENTS, USER_ATTRIBUTES

pytestmark = pytest.mark.integration

ALICE = "alice@example.com"  # an email: silver stores its pseudonym
BOB = "bob-7"


def append_bronze(env: Env, events: list[dict[str, object]], received_at: datetime | None = None) -> int:
    """Native payloads (one page view each, ``events`` as given) appended to bronze in one commit,
    received ``received_at`` (default now)."""
    ctx = RequestContext(received_at=received_at or datetime.now(UTC), user_agent="Mozilla/5.0", ip="192.0.2.1")
    rows = [row for payload in events for row in explode_payload({"events": {"page_view": {}}, **payload}, ctx)]
    return env.lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def history() -> list[dict[str, object]]:
    """Alice browses anonymously (session s-a) on 2024-03-01, then logs in the same session and comes
    back on 2024-03-02 and 2024-03-05; Bob is active every one of those days. One event of Alice's has
    a timestamp far in the future: it is quarantined."""
    events: list[dict[str, object]] = [
        {"uuid": "a0", "timestamp": "2024-03-01T09:00:00Z", "session": "s-a"},
        {"uuid": "a1", "timestamp": "2024-03-01T09:05:00Z", "session": "s-a", "user": ALICE},
        {"uuid": "a2", "timestamp": "2024-03-02T10:00:00Z", "session": "s-a2", "user": ALICE},
        {"uuid": "a3", "timestamp": "2024-03-05T10:00:00Z", "user": ALICE},
        {"uuid": "aq", "timestamp": "2099-01-01T00:00:00Z", "user": ALICE},
    ]
    events += [
        {"uuid": f"b{day}", "timestamp": f"2024-03-0{day}T12:00:00Z", "session": f"s-b{day}", "user": BOB}
        for day in (1, 2, 5)
    ]
    return events


def today() -> date:
    """The UTC day bronze receives now."""
    return datetime.now(UTC).date()


def tomorrow() -> date:
    return today() + timedelta(days=1)


def string_view_files(root: Path) -> list[str]:
    """Parquet files under ``root`` with a ``string_view`` column (pyarrow's kernels cannot compare them)."""
    return [
        str(path)
        for path in root.rglob("*.parquet")
        if any(field.type == pa.string_view() for field in pq.read_schema(path))
    ]


def active(env: Env) -> dict[str, int]:
    """Served DAU of the days with any active person."""
    return {day: n for day, n in dau(env).items() if n}


def request_for(env: Env, user: str, app: str | None = None) -> erasure.ErasureRequest:
    return erasure.erasure_request(SilverResource.from_settings(env.settings()).pseudonymizer(), user, app)


def erase_job(env: Env, request: erasure.ErasureRequest) -> None:
    config = {"request_id": request.request_id, "user_hash": request.user_hash, "app": request.app}
    result = (
        build_definitions(env.settings())
        .resolve_job_def("erase_person")
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), run_config={"ops": {"erase_rows": {"config": config}}}
        )
    )
    assert result.success


def users_of(env: Env) -> list[str | None]:
    """Silver's user ids, both tiers, one per event."""
    return sorted(env.lake.dataset(EVENTS).to_table(columns=["user_id"])["user_id"].to_pylist(), key=str)


def pseudonym(env: Env, value: str) -> str:
    return SilverResource.from_settings(env.settings()).pseudonymizer().identifier("user_id", value)


@pytest.fixture
def users(tmp_path: Path, setting: Callable[[str, str], None]) -> Path:
    path = tmp_path / "users.csv"
    path.write_text(f"app,user_id,plan\ndefault,{ALICE},pro\ndefault,{BOB},free\n")
    setting("EVENTLAKE_USERS_PATH", str(path))
    return path


def test_a_person_leaves_every_table_and_tier_and_gold_is_as_if_they_never_came(env: Env, users: Path) -> None:
    append_bronze(env, history())
    materialize_all(env)
    alice = pseudonym(env, ALICE)
    assert alice.startswith("hmac:")
    assert users_of(env).count(alice) == 3
    (quarantined,) = env.lake.dataset(REJECTED_EVENTS).to_table(columns=["payload"])["payload"].to_pylist()
    assert ALICE in quarantined
    assert active(env) == {"2024-03-01": 2, "2024-03-02": 2, "2024-03-05": 2}
    policy = {"hot_days": 30, "cold_days": 0, "bronze_ttl_days": 0, "quarantine_ttl_days": 0}
    run_job(env, build_definitions(env.settings()), "tier_lake", {"tier_partitions": {"config": policy}})
    assert env.lake.dataset(EVENTS, cold=False).count_rows() == 0  # every day is in the cold tier now

    erase_job(env, request_for(env, ALICE))

    assert users_of(env) == [pseudonym(env, BOB)] * 3  # both tiers: the session-only event a0 went too
    assert env.lake.dataset(REJECTED_EVENTS).count_rows() == 0
    assert env.lake.dataset(RAW_EVENTS).count_rows() == 8  # today's bronze: deleted once the day is over
    assert erasure.purge_pending(env.lake, today()) == 0
    assert erasure.purge_pending(env.lake, tomorrow()) == 5
    bronze = env.lake.dataset(RAW_EVENTS).to_table(columns=["payload"])["payload"].to_pylist()
    assert len(bronze) == 3 and all(BOB in payload for payload in bronze)
    assert string_view_files(env.data_dir) == []
    attributes = env.lake.dataset(USER_ATTRIBUTES).to_table(columns=["user_id"])["user_id"].to_pylist()
    assert set(attributes) == {BOB}
    (audit,) = env.lake.dataset(erasure.ERASURES).to_table().to_pylist()
    removed = erasure.removed_rows(audit)
    assert removed["raw_events_after_the_day"] == 5 and removed["rejected_events"] == 1
    assert removed["cold_events"] == 4
    assert removed["user_attributes"] == 1 and removed["identity_links"] == 2  # s-a and s-a2
    assert ALICE not in str(audit) and alice not in str(audit)

    materialize_all(env)  # the next micro-batch recomputes the recorded days (all in the cold tier)
    assert active(env) == {"2024-03-01": 1, "2024-03-02": 1, "2024-03-05": 1}
    after = served(env)
    assert ALICE not in str(after) and alice not in str(after) and "s-a" not in str(after)
    env.warehouse.unlink()
    env.serving.unlink()
    materialize_all(env)
    rebuilt = served(env)
    # Gold rebuilt from what the lake holds is the same, but for data quality's counts of what was
    # received and validated: like bronze's retention, an erasure does not rewrite the pipeline's
    # own history (counts only, no person in them).
    assert {mart: rows for mart, rows in rebuilt.items() if mart != "data_quality_daily"} == {
        mart: rows for mart, rows in after.items() if mart != "data_quality_daily"
    }


def test_events_of_an_erased_person_arriving_later_are_dropped(env: Env) -> None:
    append_bronze(env, history())
    materialize_all(env)
    erase_job(env, request_for(env, ALICE))
    # A retry of an erased event, a new event of the erased user, one of a session linked to them,
    # and one of Bob's.
    append_bronze(
        env,
        [
            {"uuid": "a2", "timestamp": "2024-03-02T10:00:00Z", "session": "s-a2", "user": ALICE},
            {"uuid": "a9", "timestamp": "2024-03-06T10:00:00Z", "user": ALICE},
            {"uuid": "a8", "timestamp": "2024-03-06T10:00:00Z", "session": "s-a"},
            {"uuid": "b9", "timestamp": "2024-03-06T10:00:00Z", "user": BOB},
        ],
    )
    result = materialize_all(env)
    assert users_of(env) == [pseudonym(env, BOB)] * 4
    assert env.lake.dataset(REJECTED_EVENTS).count_rows() == 0
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert metadata["erased_rows"].value == 3
    assert active(env)["2024-03-06"] == 1


@contextmanager
def answering_server_info() -> Iterator[int]:
    """A server on a loopback port that answers ``/server_info`` as Dagster's webserver does (200)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/server_info" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def crash_on_call(monkeypatch: pytest.MonkeyPatch, name: str, call: int) -> None:
    """Make ``pipelines.erasure.<name>`` raise on its ``call``-th call (1-based)."""
    original = getattr(erasure, name)
    calls = {"n": 0}

    def step(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == call:
            raise RuntimeError(f"crash in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(erasure, name, step)


@pytest.mark.parametrize(
    ("step", "call"),
    [("_record_days", 1), ("_delete", 2), ("_delete", 3), ("_delete_attributes", 1), ("_erase_gold_state", 1)],
)
def test_an_erasure_interrupted_at_any_step_is_finished_by_running_it_again(
    env: Env, monkeypatch: pytest.MonkeyPatch, step: str, call: int
) -> None:
    append_bronze(env, history())
    materialize_all(env)
    request = request_for(env, ALICE)
    crash_on_call(monkeypatch, step, call)
    with duckdb.connect(str(env.warehouse)) as con, pytest.raises(RuntimeError, match="crash"):
        erasure.erase(env.lake, con, SilverResource.from_settings(env.settings()).pseudonymizer(), request)
    monkeypatch.undo()
    assert env.lake.dataset(ERASURE_TOMBSTONES).count_rows() == 3  # recorded first: alice, s-a, s-a2
    erase_job(env, request)  # the same request again
    materialize_all(env)
    assert users_of(env) == [pseudonym(env, BOB)] * 3
    assert active(env) == {"2024-03-01": 1, "2024-03-02": 1, "2024-03-05": 1}
    with duckdb.connect(str(env.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from identity_links").fetchall() == [(3,)]  # Bob's sessions
        # Every recorded day is tied to the erasure's silver version (the next erasure forgets them).
        assert con.execute("select count(*) from gold_recompute_days where silver_version is null").fetchall() == [(0,)]


def test_the_cli_erases_in_process_and_says_clearly_when_the_user_is_unknown(
    env: Env, setting: Callable[[str, str], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setting("EVENTLAKE_DATA_DIR", str(env.data_dir))
    setting("EVENTLAKE_DAGSTER_PORT", str(free_port()))  # nothing answers there: the stack is stopped
    append_bronze(env, history())
    materialize_all(env)
    assert erase_cli.main(["--user", "nobody", "--in-process"]) == 1
    assert "no event, link or attribute of this user in any app: nothing erased" in capsys.readouterr().err
    assert env.lake.version(ERASURE_TOMBSTONES) is None
    assert erase_cli.main(["--user", ALICE, "--app", "other-app", "--in-process"]) == 1
    assert "in app other-app: nothing erased" in capsys.readouterr().err
    assert erase_cli.main(["--user", ALICE, "--app", "default", "--in-process"]) == 0
    out = capsys.readouterr().out
    assert "erased the user (app default)" in out and "  raw_events_after_the_day: 5 rows" in out and ALICE not in out
    assert users_of(env) == [pseudonym(env, BOB)] * 3
    # Regression (a new-user trial): the same request again the same day found her bronze rows of
    # today, already waiting for the day's end, and "erased" her again (exit 0).
    assert erase_cli.main(["--user", ALICE, "--app", "default", "--in-process"]) == 1
    assert "in app default (it was erased before): nothing erased" in capsys.readouterr().err
    erasure.purge_pending(env.lake, tomorrow())  # her bronze rows of today go once the day is over
    assert erase_cli.main(["--user", ALICE, "--in-process"]) == 1
    assert "in any app (it was erased before): nothing erased" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        erase_cli.main(["--user", " ", "--in-process"])
    assert "the user id is empty" in capsys.readouterr().err
    assert erase_cli.main(["--user", BOB]) == 2
    err = capsys.readouterr().err
    assert "Dagster is not answering at http://127.0.0.1:" in err
    assert "start the stack (`make up`), or pass --in-process while it is stopped" in err
    with answering_server_info() as port:  # something answers /server_info: --in-process is refused
        setting("EVENTLAKE_DAGSTER_PORT", str(port))
        assert erase_cli.main(["--user", BOB, "--in-process"]) == 2
        assert "the stack runs; erase without --in-process" in capsys.readouterr().err


def test_an_erasure_during_a_load_loses_no_other_event_and_leaves_no_trace_in_any_file(env: Env, users: Path) -> None:
    api: ApiServer = start_api(env)
    try:
        acked: list[str] = []
        stop = threading.Event()

        def load() -> None:
            i = 0
            while not stop.is_set():
                user = ALICE if i % 5 == 0 else f"user-{i % 7}"
                batch = {"uuid": f"load-{i}", "timestamp": "2024-03-03T10:00:00Z", "user": user}
                if api.post("/v1/events", json={**batch, "events": {"page_view": {}}}, timeout=30).status_code == 202:
                    acked.append(batch["uuid"])
                i += 1

        loader = threading.Thread(target=load)
        append_bronze(env, history())
        loader.start()
        time.sleep(2)
        materialize_all(env)
        erase_job(env, request_for(env, ALICE))  # bronze is being appended to meanwhile
        time.sleep(1)
        stop.set()
        loader.join()
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)
    materialize_all(env)  # Alice's events acknowledged after the erasure are dropped here
    assert erasure.purge_pending(env.lake, tomorrow()) > 0  # the day is over: tier_lake's first step
    # Traffic goes on: every consumer reads past the purge.
    append_bronze(env, [{"uuid": "after", "timestamp": "2024-03-04T10:00:00Z", "user": BOB}])
    materialize_all(env)
    others = {f"load-{i}" for i in range(len(acked) * 2) if i % 5} & set(acked)
    silver_users = users_of(env)
    assert pseudonym(env, ALICE) not in silver_users
    assert len(silver_users) == len(others) + 4  # every other acknowledged event, once, and Bob's
    # The vacuum window passes: data files older than the margin, every consumer past the erasure.
    for path in Path(env.data_dir).rglob("*.parquet"):
        if "_delta_log" not in path.parts:
            os.utime(path, (time.time() - 7200, time.time() - 7200))
    maintenance = {
        "maintain_tables": {
            "config": {"retention_h": 0.05, "log_retention_minutes": 0, "target_file_mb": 64, "silver_open_days": 0}
        },
        "prune_dagster_runs": {"config": {"run_retention_days": 7}},
    }
    run_job(env, build_maintenance_definitions(env.settings()), "maintain_lake", maintenance)
    texts = stored_text(env.data_dir)
    holding = {
        path for path, text in texts.items() if any(value in text for value in (ALICE, pseudonym(env, ALICE), '"s-a"'))
    }
    assert holding == set()


def test_a_user_stored_as_sent_is_erased_from_bronze_by_the_rows_that_contain_their_ids(env: Env) -> None:
    """Bob's ids are stored as sent (no pseudonym): bronze rows are decoded only where the payload
    text holds one of them, and matched exactly after (``b-7``'s rows stay: not Bob's)."""
    append_bronze(env, [*history(), {"uuid": "x", "timestamp": "2024-03-01T12:00:00Z", "user": "bob-70"}])
    materialize_all(env)
    erase_job(env, request_for(env, BOB))
    erasure.purge_pending(env.lake, tomorrow())
    bronze = env.lake.dataset(RAW_EVENTS).to_table(columns=["payload"])["payload"].to_pylist()
    assert len(bronze) == 6 and not any('"bob-7"' in payload for payload in bronze)
    assert sum('"bob-70"' in payload for payload in bronze) == 1
    assert users_of(env) == sorted([pseudonym(env, ALICE)] * 3 + ["bob-70", None], key=str)


def test_ids_seen_with_a_user_only_in_events_silver_has_not_read_are_found_in_bronze(env: Env) -> None:
    """Bob's ids are stored as sent, so bronze is read only where the payload text holds one of the ids
    found so far. Events silver has not read yet link Bob to a new session s-n (received today, with
    his user id) and carry s-n alone (received yesterday): both are his; the second is found by
    reading bronze again with s-n, and neither reaches silver."""
    append_bronze(env, history())
    materialize_all(env)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    append_bronze(env, [{"uuid": "n0", "timestamp": "2024-03-06T09:00:00Z", "session": "s-n"}], yesterday)
    append_bronze(env, [{"uuid": "n1", "timestamp": "2024-03-06T10:00:00Z", "session": "s-n", "user": BOB}])
    erase_job(env, request_for(env, BOB))
    erasure.purge_pending(env.lake, tomorrow())
    bronze = env.lake.dataset(RAW_EVENTS).to_table(columns=["payload"])["payload"].to_pylist()
    assert len(bronze) == 5 and not any('"s-n"' in payload or '"bob-7"' in payload for payload in bronze)
    materialize_all(env)
    assert users_of(env) == sorted([pseudonym(env, ALICE)] * 3 + [None], key=str)
    sessions = env.lake.dataset(EVENTS).to_table(columns=["session_id"])["session_id"].to_pylist()
    assert "s-n" not in sessions


def test_an_id_another_person_was_linked_to_first_stays_theirs(env: Env) -> None:
    """Regression (found by breaking it): Bob logs in on session s-x first, Alice later on the same
    session, then s-x browses anonymously: identity stitching gives that visit to Bob (first link
    wins), and erasing Alice must leave it, his link and his later events alone."""
    append_bronze(
        env,
        [
            {"uuid": "b1", "timestamp": "2024-03-01T10:00:00Z", "session": "s-x", "user": BOB},
            {"uuid": "a1", "timestamp": "2024-03-02T10:00:00Z", "session": "s-x", "user": ALICE},
            {"uuid": "x1", "timestamp": "2024-03-03T10:00:00Z", "session": "s-x"},
        ],
    )
    materialize_all(env)
    assert active(env) == {"2024-03-01": 1, "2024-03-02": 1, "2024-03-03": 1}
    erase_job(env, request_for(env, ALICE))
    append_bronze(env, [{"uuid": "x2", "timestamp": "2024-03-04T10:00:00Z", "session": "s-x"}])
    materialize_all(env)
    assert users_of(env) == [None, None, pseudonym(env, BOB)]  # x1, x2 and Bob's login
    assert active(env) == {"2024-03-01": 1, "2024-03-03": 1, "2024-03-04": 1}
    with duckdb.connect(str(env.warehouse), read_only=True) as con:
        assert con.execute("select alias_id, person_id from identity_links").fetchall() == [
            ("s-x", pseudonym(env, BOB))
        ]


def test_rows_with_a_blank_user_id_are_resolved_through_their_session_and_erased(env: Env) -> None:
    """Regression: gold reads a blank user id as none (the row is its session's person); the erasure
    read only null as none and left such rows, and the person in gold."""
    append_bronze(
        env,
        [
            {"uuid": "a1", "timestamp": "2024-03-01T10:00:00Z", "session": "s-a", "user": "alice"},
            {"uuid": "a2", "timestamp": "2024-03-03T10:00:00Z", "session": "s-a", "user": "   "},
            {"uuid": "a3", "timestamp": "2024-03-03T11:00:00Z", "session": "s-a", "user": ""},
            {"uuid": "b1", "timestamp": "2024-03-03T10:00:00Z", "user": BOB},
        ],
    )
    materialize_all(env)
    erase_job(env, request_for(env, "alice"))
    materialize_all(env)
    assert users_of(env) == [pseudonym(env, BOB)]
    assert env.lake.dataset(REJECTED_EVENTS).count_rows() == 0
    assert active(env) == {"2024-03-03": 1}
    assert "alice" not in str(served(env))
    with duckdb.connect(str(env.warehouse), read_only=True) as con:
        assert "'alice'" not in str(con.execute("select * from active_person_days").fetchall())
