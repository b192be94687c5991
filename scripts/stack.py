"""Run the whole eventlake stack locally: ``make up`` (keeps serving) and ``make demo`` (stops).

1. starts the ingest API (uvicorn, 127.0.0.1:8000) and Dagster (webserver + daemon,
   127.0.0.1:3000) with everything they write under the data folder (``EVENTLAKE_DATA_DIR``,
   default ``./data``), Dagster telemetry off and runs serialized;
2. replays the bundled samples through the HTTP API as the ``local`` source (its write key is
   generated under the data folder on first start and printed), with the ecom sample's users as
   the users source unless ``EVENTLAKE_USERS_PATH`` is set;
3. waits until gold covers the last acknowledged bronze version (exit 1 after 15 minutes,
   ``EVENTLAKE_GOLD_TIMEOUT_S``), prints DAU/MAU per app;
4. ``up``: serves until Ctrl-C; ``demo``: stops. Every process started is stopped on exit.

``serve`` skips steps 2 and 3: the stack starts empty and serves (``bench/bench_freshness.py``
drives it with its own load).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dashboards import service
from ingest_api.replay import replay
from warehouse.settings import get_settings
from warehouse.sources import LOCAL_SOURCE, ensure_local_source
from warehouse.status import GoldNotReadyError, active_users_summary, format_summary, wait_for_gold

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [
    ROOT / "samples" / name
    for name in ("web_access_2015.log", "onlineshop_2019.csv", "ecom_scenarios_2024.csv.gz", "ui_demo.ndjson")
]
#: The ecom sample's users (a slowly changing dimension), used by ``up``/``demo`` unless
#: ``EVENTLAKE_USERS_PATH`` names another source.
USERS_SAMPLE = ROOT / "samples" / "ecom_scenarios_2024_users.csv"
BIN = Path(sys.executable).parent

DAGSTER_YAML = """\
# Written by scripts/stack.py on every start.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
# The daemon looks at the run queue every second (default 5 s): a queued run waited 2.5 s on average
# before its process even started (bench/bench_freshness.py's "run start").
run_queue:
  dequeue_interval_seconds: 1
"""


def say(message: str) -> None:
    print(f"[eventlake] {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s; see {log}")


class ProcessDiedError(RuntimeError):
    """A process of the stack exited while it should be serving."""


class RunFailedError(RuntimeError):
    """A pipeline run failed while gold was awaited: the sensor does not retry the same bronze
    version, so waiting longer would only hit the timeout."""


def failed_run_check(dagster_home: Path, since: datetime) -> Callable[[], None]:
    """A ``wait_for_gold`` check raising :class:`RunFailedError` once a run created after
    ``since`` (UTC) has failed, with each failed step's error message (e.g. a malformed funnels file).
    """
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))

    def check() -> None:
        records = instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=since), limit=1
        )
        if not records:
            return
        run_id = records[0].dagster_run.run_id
        failures = [
            f"{event.step_key}: {_step_error(event.dagster_event.step_failure_data.error)}"
            for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            if event.dagster_event and event.dagster_event.step_failure_data.error
        ]
        raise RunFailedError(
            f"pipeline run {run_id} failed: {'; '.join(failures) or 'see its logs'}. Fix the cause and "
            "run again (or re-execute the run from the Dagster UI's Runs page)"
        )

    return check


def _in_progress() -> list[Any]:
    """Run statuses of a run that has a worker (or had one, if its stack was killed)."""
    import dagster as dg

    return [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def fail_orphaned_runs(dagster_home: Path) -> list[str]:
    """Mark runs an earlier stack left starting or running as failed; return their ids.

    At start-up no run worker of this data folder can be alive (the ports were free), so such a
    run was cut off by a stack that was killed. Left as STARTED, a ``hot_path`` run would make the
    bronze sensor wait for it forever. Their micro-batches are not lost: silver's watermark only
    moves when a batch commits, and the next run picks the rest up.
    """
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    orphaned = [record.dagster_run for record in instance.get_run_records(dg.RunsFilter(statuses=_in_progress()))]
    for run in orphaned:
        instance.report_run_failed(run, "the stack that ran it stopped before the run ended (scripts/stack.py)")
    return [run.run_id for run in orphaned]


def terminate_runs(dagster_home: Path, timeout_s: float = 30) -> None:
    """Terminate runs in progress (the long-lived ``hot_path`` above all) and wait until they end.

    Dagster's own termination (the UI's Terminate button): the run worker is interrupted, ends the
    step it is in (a micro-batch's commits are atomic and its watermark moves only after them) and
    records the run as canceled, so the next start does not find it running. Best effort: stopping
    the stack goes on whatever happens here.
    """
    import dagster as dg

    try:
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        runs = [
            record.dagster_run.run_id for record in instance.get_run_records(dg.RunsFilter(statuses=_in_progress()))
        ]
        for run_id in runs:
            instance.run_launcher.terminate(run_id)
        deadline = time.monotonic() + timeout_s
        while runs and time.monotonic() < deadline:
            time.sleep(0.5)
            left = instance.get_run_records(dg.RunsFilter(run_ids=runs, statuses=_in_progress()))
            runs = [record.dagster_run.run_id for record in left]
    except Exception as exc:  # noqa: BLE001 - stopping must go on (e.g. Dagster never started)
        say(f"could not terminate Dagster runs ({exc}); they are marked failed on the next start")


def _step_error(error: Any) -> str:
    # Dagster wraps the step's own exception ("Error occurred while executing op …"): report the
    # first exception below its wrappers, which says what is wrong.
    while str(error.cls_name).startswith("Dagster") and error.cause is not None:
        error = error.cause
    return str(error.message).strip()


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is running (not gone, not a zombie)."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


class Stack:
    """The processes this script started, stopped in reverse order on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}.log"
        handle = log.open("ab")
        # Own process group: Ctrl-C reaches only this script, which then stops each group
        # with SIGINT (Dagster's processes shut down their code servers cleanly on it).
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))
        say(f"started {name} (pid {proc.pid}), log: {log}")
        return proc, log

    def check_alive(self) -> None:
        """Raise :class:`ProcessDiedError` if a started process has exited."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise ProcessDiedError(f"{name} exited with code {proc.returncode}; see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        # A second Ctrl-C (or a supervisor forwarding the first one again) must not abort the
        # cleanup half-way and leave servers running: ignore it from here on.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Dagster's code servers run in their own sessions; they also exit when their parent
        # stops heartbeating (~20 s), but we wait for them here so nothing outlives the stack.
        terminate_runs(self.data_dir / "dagster")
        leftovers = [pid for _, proc in self.procs for pid in descendants(proc.pid)]
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within 30 s, killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            say(f"stopped {name}")
        deadline = time.monotonic() + 30
        for pid in leftovers:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def start_superset(stack: Stack, data_dir: Path, port: int, serving_file: Path) -> None:
    """Initialize, start and provision Superset; print the admin credentials when they are new."""
    env = service.environment(data_dir)
    account = service.admin(data_dir)
    setup_log = stack.logs / "superset_setup.log"
    say("setting up Superset (metadata database, admin user, roles) …")
    service.initialize(env, account, setup_log)
    proc, _ = stack.start("superset", service.start_args(port), env)
    url = f"http://127.0.0.1:{port}"
    service.wait_healthy(url, 180, proc)
    service.provision(env, account, url, serving_file, setup_log)
    say(
        f"Superset at {url}: dashboards Overview, Audience, Funnels, Forms, Components, Errors, Retention and "
        "Data quality "
        f"({url}/dashboard/list/; start at {url}/superset/dashboard/eventlake-overview/)"
    )
    if account.generated:
        say(
            f"Superset admin login (shown once; kept in {data_dir / 'superset' / 'admin.json'}): "
            f"{account.username} / {account.password}"
        )
    elif not os.environ.get("SUPERSET_ADMIN_USER"):
        say(f"Superset admin login: user {account.username!r}, password in {data_dir / 'superset' / 'admin.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["up", "demo", "serve"])
    args = parser.parse_args()
    started_at = time.monotonic()

    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    dagster_home = data_dir / "dagster"
    for folder in (data_dir / "logs", dagster_home):
        folder.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    # One directory per start for the API workers' Prometheus samples (multiprocess mode).
    metrics_dir = data_dir / "run" / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    write_key = ensure_local_source(settings)
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "EVENTLAKE_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if args.mode != "serve" and settings.users_path is None:
        env["EVENTLAKE_USERS_PATH"] = str(USERS_SAMPLE)
    ports = (settings.ingest_port, settings.dagster_port) + ((settings.superset_port,) if settings.superset else ())
    for port in ports:
        if not port_free(port):
            say(f"port {port} on 127.0.0.1 is in use: stop whatever holds it (an earlier `make up`?)")
            return 1

    stack = Stack(data_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C must stop the stack even when it was started in the background by a script (a
    # non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        api, api_log = stack.start(
            "ingest_api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "ingest_api.main:app",
                "--host",
                settings.ingest_host,
                "--port",
                str(settings.ingest_port),
                "--workers",
                str(settings.ingest_workers),
                "--no-access-log",  # the API writes its own JSON request log (no query strings, no payloads)
            ],
            env,
        )
        workspace = str(ROOT / "workspace.yaml")
        # Create/upgrade Dagster's SQLite storage once, before its processes start: the daemon
        # and the webserver racing to create it left one of them dead ("alembic_version
        # already exists").
        with (stack.logs / "dagster_migrate.log").open("ab") as migrate_log:
            subprocess.run(
                [str(BIN / "dagster"), "instance", "migrate"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=migrate_log,
                stderr=subprocess.STDOUT,
            )
        for run_id in fail_orphaned_runs(dagster_home):
            say(f"marked run {run_id}, left running by an earlier stack, as failed")
        dagster, dagster_log = stack.start(
            "dagster_webserver",
            [
                str(BIN / "dagster-webserver"),
                "-w",
                workspace,
                "-h",
                "127.0.0.1",
                "-p",
                str(settings.dagster_port),
            ],
            env,
        )
        api_url = f"http://{settings.ingest_host}:{settings.ingest_port}"
        wait_http(f"{api_url}/healthz", 60, api, "ingest API", api_log)
        wait_http(f"http://127.0.0.1:{settings.dagster_port}/server_info", 180, dagster, "Dagster", dagster_log)
        stack.start("dagster_daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], env)
        say(f"ingest API at {api_url}, Dagster UI at http://127.0.0.1:{settings.dagster_port}")
        say(
            f"source {LOCAL_SOURCE!r} write key: {write_key} (kept in {settings.local_key_path}); "
            f"send it as X-Write-Key or Basic auth"
        )
        if settings.superset:
            start_superset(stack, data_dir, settings.superset_port, settings.serving_file)

        if args.mode == "serve":
            say("serving an empty stack (no sample replay); press Ctrl-C to stop")
            while True:
                stack.check_alive()
                time.sleep(1)

        replay_started = datetime.now(UTC)
        say("replaying the bundled samples through POST /v1/events …")
        result = replay(SAMPLES, api_url, write_key, progress=sys.stderr.isatty())
        say(
            f"acknowledged {result.accepted} events ({result.rejected} payloads rejected), "
            f"last bronze version {result.bronze_version}"
        )

        timeout_s = settings.gold_timeout_s
        say(f"waiting for gold to cover bronze version {result.bronze_version} (limit {timeout_s:.0f} s) …")
        runs_ok = failed_run_check(data_dir / "dagster", replay_started)

        def healthy() -> None:
            stack.check_alive()
            runs_ok()

        try:
            waited = wait_for_gold(settings.serving_file, result.bronze_version or 0, timeout_s, check=healthy)
        except (GoldNotReadyError, RunFailedError) as exc:
            say(f"ERROR: {exc}")
            return 1
        say(f"gold is up to date ({waited:.0f} s after the replay, {time.monotonic() - started_at:.0f} s in all)")
        days = get_settings().reporting_timezone
        print(f"\nDAU / MAU per app ({days} days; people, bots excluded):\n")
        print(format_summary(active_users_summary(settings.serving_file)), end="\n\n", flush=True)

        if args.mode == "demo":
            return 0
        say("serving; press Ctrl-C to stop")
        while True:
            stack.check_alive()
            time.sleep(1)
    except (ProcessDiedError, service.SupersetError) as exc:
        say(f"ERROR: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
