"""The local stack under supervisord (scripts/stack.py serve, without Superset): it heals and stops clean.

Real processes on 127.0.0.1: the stack CLI, supervisord, uvicorn (master and workers), Dagster's
webserver, daemon and code servers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pyarrow.compute as pc
import pytest

from pipelines.cli.status import covered_bronze_version
from tests.conftest import ROOT, free_port
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS

pytestmark = pytest.mark.integration


@dataclass
class RunningStack:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    ingest_port: int
    dagster_port: int
    log: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    @property
    def write_key(self) -> str:
        return (self.data_dir / "local_write_key").read_text().strip()


def children() -> dict[int, list[int]]:
    """Each live pid's children (Linux /proc)."""
    found: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    tree, found, queue = children(), [], [pid]
    while queue:
        for child in tree.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def uvicorn_master(stack: RunningStack) -> int | None:
    masters = [pid for pid in descendants(stack.proc.pid) if "uvicorn ingest_worker:app" in cmdline(pid)]
    return masters[0] if masters else None


def uvicorn_workers(master: int | None) -> list[int]:
    return [pid for pid in children().get(master, []) if "spawn_main" in cmdline(pid)]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


#: A parent process between the test and the CLI, as `make up` is: it waits for its one child.
PARENT = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]


def start_stack(tmp_path: Path, parent: list[str] | None = None) -> RunningStack:
    """``scripts/stack.py serve`` with SUPERSET=0 on free ports (run by ``parent``, a command the CLI's
    command is appended to, when given); returns once it serves."""
    data_dir, log, ingest_port, dagster_port = tmp_path / "data", tmp_path / "stack.log", free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "EVENTLAKE_INGEST_WORKERS"},  # the stack's default: 2
        "EVENTLAKE_DATA_DIR": str(data_dir),
        "EVENTLAKE_INGEST_PORT": str(ingest_port),
        "EVENTLAKE_DAGSTER_PORT": str(dagster_port),
        "EVENTLAKE_SUPERSET": "0",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*(parent or []), sys.executable, str(ROOT / "scripts" / "stack.py"), "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    stack = RunningStack(proc, data_dir, ingest_port, dagster_port, log)
    wait_until(
        lambda: "serving an empty stack" in stack.log.read_text() or stack.proc.poll() is not None, 180, "stack serves"
    )
    assert stack.proc.poll() is None, stack.log.read_text()
    return stack


def stop_stack(stack: RunningStack, sig: int) -> int:
    stack.proc.send_signal(sig)
    try:
        return stack.proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        for pid in descendants(stack.proc.pid):
            os.kill(pid, signal.SIGKILL)
        stack.proc.kill()
        raise


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running, signal.SIGTERM)


class Load:
    """Clients that each POST one event at a time over a keep-alive connection, until stopped."""

    def __init__(self, stack: RunningStack, clients: int = 4) -> None:
        self.stack, self.clients = stack, clients
        self.outcomes: list[tuple[float, str]] = []  # (monotonic time, "ok" or the error's class)
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def _client(self, number: int) -> None:
        sent = 0
        with httpx.Client(base_url=self.stack.api_url, headers={"X-Write-Key": self.stack.write_key}) as client:
            while not self.done.is_set():
                sent += 1
                event = {"uuid": f"load-{number}-{sent}", "timestamp": "2026-11-03T10:00:00Z", "app": "load"}
                try:
                    response = client.post("/v1/events", json=[{**event, "page": "https://load.example/"}], timeout=10)
                    outcome = "ok" if response.status_code == 202 else f"http {response.status_code}"
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                self.outcomes.append((time.monotonic(), outcome))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


def test_a_killed_ingest_worker_is_replaced_while_the_other_keeps_serving(stack: RunningStack) -> None:
    master = uvicorn_master(stack)
    workers = uvicorn_workers(master)
    assert len(workers) == 2
    with Load(stack) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(4)
    before = [outcome for at, outcome in load.outcomes if at < killed_at]
    after = Counter(outcome for at, outcome in load.outcomes if at >= killed_at)
    assert before and set(before) == {"ok"}
    # Only the requests the killed worker was answering may fail (one per client at most): no
    # connection is refused, the clients' next requests are answered by the other worker.
    assert after["ConnectError"] == 0, after
    assert sum(count for outcome, count in after.items() if outcome != "ok") <= load.clients, after
    assert after["ok"] > 20, after
    # uvicorn's master replaced the worker.
    wait_until(lambda: len(uvicorn_workers(master)) == 2, 30, "a new worker")
    assert workers[0] not in uvicorn_workers(master) and workers[1] in uvicorn_workers(master)
    assert httpx.get(f"{stack.api_url}/healthz").status_code == 200


def test_a_killed_uvicorn_master_is_restarted_with_new_workers(stack: RunningStack) -> None:
    master = uvicorn_master(stack)
    workers = uvicorn_workers(master)
    os.kill(master, signal.SIGKILL)
    # Its workers stop with it (they would hold the port), supervisord starts a new master.
    wait_until(lambda: not any(alive(pid) for pid in workers), 30, "the old workers exit")
    wait_until(lambda: uvicorn_master(stack) not in (None, master), 30, "a new master")

    def serving() -> bool:
        try:
            return httpx.get(f"{stack.api_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(serving, 60, "the API answers again")
    assert len(uvicorn_workers(uvicorn_master(stack))) == 2
    assert "ingest_api exited and was restarted" in stack.log.read_text()


def hot_path_worker(instance: dg.DagsterInstance, run_id: str) -> int:
    """The pid of the process a run executes in (Dagster's "Started process for run (pid: N)")."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if found := re.search(r"Started process for run \(pid: (\d+)\)", event.message or ""):
            return int(found.group(1))
    raise AssertionError(f"run {run_id} has no process")


def test_a_hot_path_killed_mid_micro_batch_is_replaced_and_gold_catches_up_without_new_events(
    stack: RunningStack,
) -> None:
    instance = dg.DagsterInstance.from_config(str(stack.data_dir / "dagster"))
    running = [dg.DagsterRunStatus.STARTED]
    # Kept alive by the bronze sensor, also with nothing to do.
    wait_until(
        lambda: instance.get_run_records(dg.RunsFilter(job_name="hot_path", statuses=running)), 120, "a hot path"
    )
    [hot_path] = instance.get_run_records(dg.RunsFilter(job_name="hot_path", statuses=running))
    events = [
        {"uuid": f"kill-{i}", "timestamp": "2026-11-03T10:00:00Z", "app": "kill", "user": f"u{i % 50}"}
        for i in range(20_000)
    ]

    def post(start: int) -> int:
        with httpx.Client(base_url=stack.api_url, headers={"X-Write-Key": stack.write_key}, timeout=60) as client:
            return int(client.post("/v1/events", json=events[start : start + 500]).json()["bronze_version"])

    with ThreadPoolExecutor(8) as pool:
        last = max(pool.map(post, range(0, len(events), 500)))  # each answer: the bronze version holding it

    def in_progress() -> list[dg.RunRecord]:
        return instance.get_run_records(dg.RunsFilter(job_name="ingest_to_gold", statuses=running))

    # A micro-batch carrying these events, killed while it runs (with its hot path's process).
    wait_until(in_progress, 60, "a micro-batch in progress")
    [child] = in_progress()
    os.kill(hot_path_worker(instance, hot_path.dagster_run.run_id), signal.SIGKILL)
    killed_at = time.monotonic()

    serving = stack.data_dir / "serving" / "serving.duckdb"
    wait_until(lambda: (covered_bronze_version(serving) or -1) >= last, 60, "gold covers every acked event")
    caught_up_s = time.monotonic() - killed_at
    # The micro-batch ran in the killed process: it never finished.
    assert not instance.all_logs(child.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    statuses = [instance.get_run_by_id(r.dagster_run.run_id).status for r in (hot_path, child)]
    assert statuses == [dg.DagsterRunStatus.FAILURE] * 2
    assert instance.get_run_records(dg.RunsFilter(job_name="hot_path", statuses=running))  # its successor
    silver = Lake(str(stack.data_dir / "lake")).dataset(EVENTS).to_table(columns=["event_id", "app"])
    kill_rows = silver.filter(pc.equal(silver["app"], "kill"))
    assert kill_rows.num_rows == len(set(kill_rows["event_id"].to_pylist())) == len(events), caught_up_s


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 0)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_stack_stops_every_process_and_frees_every_port(
    tmp_path: Path, sig: int, exit_code: int
) -> None:
    stack = start_stack(tmp_path)
    processes = descendants(stack.proc.pid)
    names = " ".join(cmdline(pid) for pid in processes)
    assert all(name in names for name in ("supervisord", "uvicorn", "dagster-webserver", "dagster-daemon")), names
    assert stack.write_key  # the key was generated under the data folder
    assert stop_stack(stack, sig) == exit_code
    survivors = {pid: cmdline(pid) for pid in processes if alive(pid)}
    assert not survivors
    assert port_free(stack.ingest_port) and port_free(stack.dagster_port)
    assert not (stack.data_dir / "run" / "supervisord.sock").exists()  # supervisord's control socket
    assert "stopped every process of the stack" in stack.log.read_text()


def test_a_killed_parent_of_the_cli_stops_the_stack_instead_of_orphaning_it(tmp_path: Path) -> None:
    # Regression (new-user trial): killing `make up` itself left the CLI, supervisord, the API and
    # Dagster running on their ports. The CLI now gets SIGTERM when its parent dies (even by SIGKILL).
    stack = start_stack(tmp_path, parent=PARENT)
    processes = descendants(stack.proc.pid)
    assert any("stack.py" in cmdline(pid) for pid in processes)
    stack.proc.kill()
    stack.proc.wait(timeout=30)
    try:
        wait_until(lambda: not any(alive(pid) for pid in processes), 180, "the orphaned stack stops")
    finally:
        for pid in processes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert port_free(stack.ingest_port) and port_free(stack.dagster_port)
    assert "stopped every process of the stack" in stack.log.read_text()
