"""Durability under concurrency, kill -9, storage failure, back-pressure and SIGTERM (real uvicorn)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pyarrow as pa
import pytest

from ingest_api.node_commit import STALLED_AFTER_S, ipc_bytes, node_name
from tests.conftest import ApiServer, Env, free_port, start_api
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext, bronze_table, event_id_for
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS

pytestmark = pytest.mark.integration


def bronze_ids(env: Env) -> list[str]:
    return pl.read_delta(env.lake.uri(RAW_EVENTS))["event_id"].to_list()


def payloads(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"uuid": f"{prefix}-{j}", "timestamp": 0, "user": "u"} for j in range(n)]


def ids(batch: list[dict[str, object]]) -> list[str]:
    return [event_id_for(str(p["uuid"]), "page_view") for p in batch]


def send_until(
    server: ApiServer,
    prefix: str,
    halt: threading.Event,
    acked: list[list[str]],
    unacked: list[list[str]],
    lock: threading.Lock,
    spread: bool = False,
) -> None:
    """One client: requests of 20 events (uuids ``<prefix>-<n>-<j>``) until ``halt``; each request's event
    ids go to ``acked`` (202) or ``unacked`` (anything else, or no answer). ``spread``: a new connection
    per request, so the kernel spreads them over the workers."""
    limits = httpx.Limits(max_keepalive_connections=0) if spread else httpx.Limits()
    with httpx.Client(headers=server.auth, timeout=10, limits=limits) as http:
        n = 0
        while not halt.is_set():
            batch = payloads(f"{prefix}-{n}", 20)
            n += 1
            try:
                ok = http.post(f"{server.url}/v1/events", json=batch).status_code == 202
            except httpx.TransportError:
                ok = False
            with lock:
                (acked if ok else unacked).append(ids(batch))


def stop(server: ApiServer) -> None:
    server.proc.terminate()
    server.proc.wait(timeout=30)


def _append_commits(root: str, writer: int, commits: int) -> list[int]:
    lake = Lake(root)
    versions = []
    for n in range(commits):
        rows = _rows(f"p{writer}-{n}", 50)
        versions.append(lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)))
    return versions


def _rows(prefix: str, n: int) -> list[dict[str, object]]:
    ctx = RequestContext(received_at=datetime.now(UTC))
    return [row for p in payloads(prefix, n) for row in explode_payload(p, ctx)]


def test_four_processes_append_to_one_table_at_once_and_no_commit_is_lost(env: Env) -> None:
    env.lake.ensure(RAW_EVENTS)
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_append_commits, [env.lake_root] * 4, range(4), [10] * 4))
    versions = [v for writer in results for v in writer]
    assert len(set(versions)) == 40  # every commit got its own version: none overwrote another
    assert len(bronze_ids(env)) == len(set(bronze_ids(env))) == 4 * 10 * 50


def test_four_workers_of_one_node_share_one_committer_and_no_commit_is_lost(env: Env) -> None:
    server = start_api(env, workers=4)
    deadline = time.monotonic() + 60
    while server.log.read_text().count("Application startup complete.") < 4:  # every worker serves
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.2)
    try:
        # A new connection per request, so the kernel spreads them over the workers' accept queues.
        # One client per request: a client shared by 16 threads without keep-alive once failed with
        # "Bad file descriptor" (httpcore closing a socket another thread was reading).
        def send(i: int) -> int:
            response = httpx.post(
                f"{server.url}/v1/events", json=payloads(f"w{i}", 25), headers=server.auth, timeout=60
            )
            assert response.status_code == 202, response.text
            return int(response.json()["accepted"])

        with ThreadPoolExecutor(16) as pool:
            acknowledged = sum(pool.map(send, range(200)))
    finally:
        stop(server)
    found = bronze_ids(env)
    assert acknowledged == 5000
    assert len(found) == len(set(found)) == acknowledged  # count == sum of acks, nothing twice
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    writes = [c for c in dt.history() if c.get("operation") == "WRITE"]
    assert len({c.get("eventlake.writer") for c in writes}) == 1  # the node's one committer
    assert max(int(c["eventlake.workers"]) for c in writes) >= 2  # ... committing several workers' rows at once
    # At most one commit per flush interval (50 ms in tests) for the whole node, whatever its workers:
    # no second holds more than 20 commits (+1 for a window's edge).
    starts = sorted(c["timestamp"] for c in writes)  # ms
    busiest = max(sum(1 for t in starts if s <= t < s + 1000) for s in starts)
    assert busiest <= 21, f"{busiest} commits in one second"


def test_kill_9_under_load_never_loses_an_acknowledged_event(env: Env) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    port = free_port()
    acked: list[list[str]] = []
    unacked: list[list[str]] = []
    lock = threading.Lock()
    for crash in range(3):
        server = start_api(env, workers=2, port=port)
        halt = threading.Event()

        loads = [(server, f"k{crash}-{c}", halt, acked, unacked, lock) for c in range(6)]
        threads = [threading.Thread(target=send_until, args=args) for args in loads]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 2.5))
        os.killpg(server.proc.pid, signal.SIGKILL)  # the master and its workers, mid-flight
        server.proc.wait(timeout=30)
        halt.set()
        for thread in threads:
            thread.join(timeout=30)

    server = start_api(env, workers=2, port=port)  # restarts on the table the crashes left
    try:
        assert server.post("/v1/events", json=payloads("after", 1)).status_code == 202
    finally:
        stop(server)
    found = bronze_ids(env)
    present = set(found)
    assert len(found) == len(present), f"seed {seed}: an event was stored twice"
    lost = [i for batch in acked for i in batch if i not in present]
    assert not lost, f"seed {seed}: {len(lost)} acknowledged events missing"
    for batch in unacked:  # no 2xx: absent or present, but never half a request
        assert sum(i in present for i in batch) in (0, len(batch)), f"seed {seed}: half-written request"
    assert len(acked) > 30, f"seed {seed}: too little load to mean anything ({len(acked)} requests acked)"


def test_storage_failure_is_503_and_the_api_recovers_when_storage_does(api: ApiServer, env: Env) -> None:
    assert api.post("/v1/events", json=payloads("before", 3)).status_code == 202
    table = Path(env.lake_root) / RAW_EVENTS.path
    away = table.with_name("raw_events.unavailable")
    table.rename(away)
    table.write_bytes(b"")  # a file where the table directory was: storage unusable
    try:
        response = api.post("/v1/events", json=payloads("during", 3), timeout=60)
        assert response.status_code == 503
        assert response.json()["error"] == "commit_failed" and response.headers["Retry-After"] == "1"
        readiness = httpx.get(f"{api.url}/readyz", timeout=30)
        assert readiness.status_code == 503 and readiness.json()["status"] == "not_ready"
    finally:
        table.unlink()
        away.rename(table)
    assert httpx.get(f"{api.url}/readyz", timeout=30).json() == {"status": "ready", "shared_state": "per_process"}
    assert api.post("/v1/events", json=payloads("after", 3)).status_code == 202
    assert sorted(bronze_ids(env)) == sorted(ids(payloads("before", 3)) + ids(payloads("after", 3)))


def test_full_buffer_answers_503_with_retry_after_instead_of_growing(env: Env) -> None:
    server = start_api(env, {"EVENTLAKE_MAX_BUFFER_EVENTS": "100", "EVENTLAKE_FLUSH_INTERVAL_MS": "2000"})
    try:
        # Committed at once (a lone request); the next commit then waits the 2 s interval, so the
        # requests below fill the buffer. Without it, the first of them was committed at once too and a
        # third fitted (a CI flake).
        assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202
        with httpx.Client(headers=server.auth, timeout=60) as client:

            def send(i: int) -> tuple[int, str | None, list[str]]:
                batch = payloads(f"bp{i}", 40)
                response = client.post(f"{server.url}/v1/events", json=batch)
                return response.status_code, response.headers.get("Retry-After"), ids(batch)

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(send, range(8)))
            statuses = sorted(status for status, _, _ in answers)
            assert statuses == [202, 202] + [503] * 6  # 2 x 40 fit under 100 while the flush waits
            assert {retry for status, retry, _ in answers if status == 503} == {"1"}
            response = client.post(f"{server.url}/v1/events", json=payloads("later", 40))
            assert response.status_code == 202  # the buffer drained with the commit
    finally:
        stop(server)
    acked = [i for status, _, batch in answers if status == 202 for i in batch] + ids(payloads("later", 40))
    acked += ids(payloads("first", 1))
    assert sorted(bronze_ids(env)) == sorted(acked)


def test_a_request_larger_than_the_whole_buffer_is_413_not_a_503_to_retry_forever(env: Env) -> None:
    # Regression (breaking the new code): 101 events with a 100-event buffer got 503 + Retry-After
    # on an empty buffer, every time.
    server = start_api(env, {"EVENTLAKE_MAX_BUFFER_EVENTS": "100"})
    try:
        response = server.post("/v1/events", json=payloads("big", 101))
        assert response.status_code == 413 and "Retry-After" not in response.headers
        assert response.json()["error"] == "request_over_buffer"
        assert server.post("/v1/events", json=payloads("fits", 100)).status_code == 202
    finally:
        stop(server)
    assert sorted(bronze_ids(env)) == sorted(ids(payloads("fits", 100)))


def test_sigterm_finishes_in_flight_commits_then_exits_cleanly(env: Env) -> None:
    server = start_api(env, {"EVENTLAKE_FLUSH_INTERVAL_MS": "3000"})
    assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202  # committed at once
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, "/v1/events", json=payloads("term", 5), timeout=30)
        time.sleep(0.5)  # the request now waits in the buffer: 3 s from the first commit to the next
        server.proc.send_signal(signal.SIGTERM)
        response = pending.result()
    assert response.status_code == 202 and response.json()["accepted"] == 5
    # uvicorn finishes its shutdown, then re-raises SIGTERM so the exit status tells why it stopped
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in server.log.read_text()
    with pytest.raises(httpx.ConnectError):
        server.post("/v1/events", json=payloads("refused", 1))
    assert sorted(bronze_ids(env)) == sorted(ids(payloads("first", 1)) + ids(payloads("term", 5)))


def _committer_pid(env: Env) -> int:
    """The pid of the worker that wrote bronze's latest WRITE commit (its ``eventlake.writer`` is host:pid)."""
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None
    writes = [c for c in dt.history() if c.get("operation") == "WRITE" and c.get("eventlake.writer")]
    return int(str(writes[0]["eventlake.writer"]).rsplit(":", 1)[1])  # history is newest first


def test_kill_9_of_the_node_committer_loses_no_acknowledged_event_and_a_peer_takes_over(env: Env) -> None:
    server = start_api(env, workers=2)
    acked: list[list[str]] = []
    unacked: list[list[str]] = []
    lock = threading.Lock()
    halt = threading.Event()

    loads = [(server, f"c{c}", halt, acked, unacked, lock, True) for c in range(6)]
    threads = [threading.Thread(target=send_until, args=args) for args in loads]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        committer = _committer_pid(env)
        os.kill(committer, signal.SIGKILL)  # the node's committer only, mid-flight
        with lock:
            acked_before_kill = len(acked)
        time.sleep(3)  # the peer takes over; uvicorn starts a new worker
        halt.set()
        for thread in threads:
            thread.join(timeout=30)
        assert _committer_pid(env) != committer  # someone else commits for the node now
    finally:
        halt.set()
        stop(server)
    found = bronze_ids(env)
    present = set(found)
    assert len(found) == len(present), "an event was stored twice"
    assert not [i for batch in acked for i in batch if i not in present], "acknowledged events missing"
    for batch in unacked:  # no 2xx: absent or present, but never half a request
        assert sum(i in present for i in batch) in (0, len(batch))
    assert len(acked) > acked_before_kill + 20  # the node went on acknowledging after the kill


def test_sigterm_of_a_node_answers_the_requests_its_peers_hold(env: Env) -> None:
    server = start_api(env, {"EVENTLAKE_FLUSH_INTERVAL_MS": "3000"}, workers=2)
    deadline = time.monotonic() + 60
    while server.log.read_text().count("Application startup complete.") < 2:  # both workers serve
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.2)
    assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202  # committed at once
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(headers=server.auth, timeout=30, limits=no_keepalive) as http, ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(http.post, f"{server.url}/v1/events", json=payloads(f"t{i}", 5)) for i in range(8)]
        time.sleep(0.5)  # the requests now wait, on both workers, for the node's next group commit
        server.proc.send_signal(signal.SIGTERM)
        statuses = [future.result().status_code for future in pending]
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert statuses == [202] * 8
    expected = ids(payloads("first", 1)) + [i for n in range(8) for i in ids(payloads(f"t{n}", 5))]
    assert sorted(bronze_ids(env)) == sorted(expected)
    dt = env.lake.open(RAW_EVENTS)
    assert dt is not None  # both workers' requests were among them, and answered
    assert max(int(c.get("eventlake.workers", 0)) for c in dt.history()) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lone_request_is_committed_at_once_and_the_next_commit_waits_for_the_interval(env: Env, workers: int) -> None:
    server = start_api(env, {"EVENTLAKE_FLUSH_INTERVAL_MS": "3000"}, workers=workers)
    try:
        started = time.monotonic()
        assert server.post("/v1/events", json=payloads("lone", 1), timeout=30).status_code == 202
        first = time.monotonic() - started
        assert server.post("/v1/events", json=payloads("next", 1), timeout=30).status_code == 202
        second = time.monotonic() - started
    finally:
        stop(server)
    assert first < 1.5  # not held for the 3 s interval
    assert second >= 2.9  # at most one commit per 3 s (the node's committer when there are workers)


#: Run as another user (uid/gid 65534, "nobody"): the Python of the project's venv with ``-c``.
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]

#: Sends one batch (stdin: an Arrow IPC stream) to the abstract socket named argv[1] (without its NUL);
#: prints the reply, or "closed" when the committer hangs up instead.
INJECT = """
import socket, struct, sys
body = sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX)
s.connect("\\0" + sys.argv[1])
try:
    s.sendall(struct.pack("!QI", 1, len(body)) + body)
    reply = s.recv(16)
except (ConnectionResetError, BrokenPipeError):
    reply = b""
print(struct.unpack("!Qq", reply) if len(reply) == 16 else "closed", flush=True)
"""

#: Binds the abstract name argv[1] and answers every batch with version 424242 without storing it.
IMPOSTOR = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.bind("\\0" + sys.argv[1])
s.listen(8)
print("bound", flush=True)
while True:
    c, _ = s.accept()
    try:
        while len(header := c.recv(12, socket.MSG_WAITALL)) == 12:
            seq, n = struct.unpack("!QI", header)
            c.recv(n, socket.MSG_WAITALL)
            c.sendall(struct.pack("!Qq", seq, 424242))
    except OSError:
        pass
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root (CI runs as root)")
def test_another_user_can_neither_commit_through_the_node_socket_nor_stand_in_for_its_committer(env: Env) -> None:
    # Regression (breaker): the abstract socket has no permissions; uid 65534 appended rows to bronze
    # past the write key, and after a committer crash bound the name and acknowledged without storing.
    server = start_api(env, workers=2)
    impostor = None
    try:
        assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202  # a committer runs
        name = node_name(server.proc.pid, env.lake_root)[1:]
        ctx = RequestContext(received_at=datetime.now(UTC))
        body = ipc_bytes(bronze_table([r for p in payloads("INJECTED", 3) for r in explode_payload(p, ctx)]))
        injected = subprocess.run(
            [*AS_NOBODY, INJECT, name], input=body.to_pybytes(), capture_output=True, timeout=30, check=False
        )
        assert injected.stdout.decode().strip() == "closed", injected
        os.kill(_committer_pid(env), signal.SIGKILL)
        time.sleep(0.3)
        impostor = subprocess.Popen([*AS_NOBODY, IMPOSTOR, name], stdout=subprocess.PIPE, text=True)
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "bound"
        refused = server.post("/v1/events", json=payloads("victim", 2), timeout=30)
        assert refused.status_code == 503  # not a 202 for events nobody stored
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
        impostor.kill()
        impostor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while server.post("/v1/events", json=payloads("after", 1)).status_code != 202:  # a real committer again
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        if impostor is not None and impostor.poll() is None:
            impostor.kill()
        stop(server)
    present = set(bronze_ids(env))
    assert not present & set(ids(payloads("INJECTED", 3)))
    assert not present & set(ids(payloads("victim", 2)))
    assert set(ids(payloads("first", 1)) + ids(payloads("after", 1))) <= present


def test_a_batch_off_bronzes_schema_is_refused_alone(env: Env) -> None:
    # Regression (breaker): one off-schema batch failed the whole group commit (503 for every request in it).
    server = start_api(env, workers=2)
    try:
        assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202
        name = node_name(server.proc.pid, env.lake_root)[1:]
        off_schema = ipc_bytes(pa.table({"x": [1]})).to_pybytes()
        with ThreadPoolExecutor(1) as pool:
            real = pool.submit(server.post, "/v1/events", json=payloads("beside", 2), timeout=30)
            refused = subprocess.run(
                [sys.executable, "-c", INJECT, name], input=off_schema, capture_output=True, timeout=30, check=False
            )
            assert real.result().status_code == 202
        assert refused.stdout.decode().strip() == "(1, -1)", refused  # FAILED, for that batch only
    finally:
        stop(server)
    assert set(ids(payloads("beside", 2))) <= set(bronze_ids(env))


def _committer_pids(master: int) -> list[int]:
    """Pids of the committer processes started for uvicorn master ``master`` (their command line names it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ingest_api.node_commit" in argv and str(master).encode() in argv:
            found.append(int(proc.name))
    return found


def test_a_committer_that_stops_answering_makes_the_node_not_ready_until_it_answers_again(env: Env) -> None:
    server = start_api(env, workers=2)
    try:
        assert server.post("/v1/events", json=payloads("first", 1)).status_code == 202
        (committer,) = _committer_pids(server.proc.pid)
        os.kill(committer, signal.SIGSTOP)  # hung: its socket still accepts, nothing answers
        try:
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(server.post, "/v1/events", json=payloads("held", 2), timeout=60)
                time.sleep(STALLED_AFTER_S + 1.5)
                # Only the worker holding the request waits on the committer; each probe is a new connection,
                # which the kernel gives either worker (4 probes all missed it in one CI run: 1 in 16).
                probes = (httpx.get(f"{server.url}/readyz", timeout=30) for _ in range(30))
                assert any(r.status_code == 503 and "not answering" in r.text for r in probes)
                os.kill(committer, signal.SIGCONT)
                assert waiting.result().status_code == 202  # answered once it commits again
        finally:
            os.kill(committer, signal.SIGCONT)
        assert httpx.get(f"{server.url}/readyz", timeout=30).json() == {
            "status": "ready",
            "shared_state": "per_process",
        }
    finally:
        stop(server)


def test_the_committer_serves_the_workers_a_killed_master_left_then_goes_with_them(env: Env) -> None:
    # Regression (breaker): after a kill -9 of the master alone, its workers lived on but the committer
    # left, and every request got 503 (each new committer saw the master gone and exited at once).
    server = start_api(env, workers=2)
    master = server.proc.pid
    (committer,) = _committer_pids(master)
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    try:
        os.kill(master, signal.SIGKILL)
        server.proc.wait(timeout=10)
        time.sleep(1)  # the committer has seen its master go
        assert server.post("/v1/events", json=payloads("orphaned", 2)).status_code == 202
        assert _committer_pids(master) == [committer]
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _committer_pids(master):  # no worker left: it goes too
        assert time.monotonic() < deadline, "the committer outlived its master and workers"
        time.sleep(0.2)
    assert set(ids(payloads("orphaned", 2))) <= set(bronze_ids(env))
