"""Run the whole eventlake stack locally: ``make up`` (keeps serving) and ``make demo`` (stops).

1. starts supervisord (``stack_processes.py``, which restarts whatever exits), then, in order and
   each once the one before answers: the ingest API (uvicorn, 2 workers unless
   ``EVENTLAKE_INGEST_WORKERS``), Dagster's webserver (storage migrated first) and daemon, and
   Superset unless ``EVENTLAKE_SUPERSET=0``; all they write lives under ``EVENTLAKE_DATA_DIR``;
2. replays the bundled samples as the ``local`` source (its write key generated on first start
   and printed), with the ecom sample's users unless ``EVENTLAKE_USERS_PATH`` is set;
3. waits until gold covers the last acknowledged bronze version (exit 1 after
   ``EVENTLAKE_GOLD_TIMEOUT_S``), prints DAU/MAU per app;
4. ``up``: serves until Ctrl-C or SIGTERM; ``demo``: stops. Stopping terminates the Dagster runs in
   progress, then supervisord stops every program with its children.

``--lake s3`` (``make up LAKE=s3``) first starts a local S3 server (Ceph RGW from Debian's packages,
file-backed under ``<data_dir>/s3``, so the lake survives a restart) and puts both lake roots on it;
it stops with the stack. Gold's DuckDB file and the serving snapshot stay local files (DuckDB cannot
open ``s3://`` here; Superset reads the snapshot).

``serve`` skips steps 2 and 3 (``bench/bench_freshness.py`` and the stack's tests bring their own load).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``mode`` (``up``, ``demo`` or ``serve``) and ``--lake`` (``local`` or ``s3``).

    Needs the standard library only, so ``python3 scripts/stack.py --help`` answers before ``.venv``
    exists.

    Raises:
        SystemExit: after ``--help`` (0) or a usage error (2), as argparse does.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run it through make, which creates .venv from the lock files first: `make up` (or `make up "
        "LAKE=s3 SUPERSET=0`), `make demo`; or, once .venv exists, `.venv/bin/python scripts/stack.py up`. "
        "Ports and the data folder come from EVENTLAKE_INGEST_PORT (8000), EVENTLAKE_DAGSTER_PORT (3000), "
        "EVENTLAKE_SUPERSET_PORT (8088) and EVENTLAKE_DATA_DIR (data); EVENTLAKE_SUPERSET=0 leaves Superset out.",
    )
    parser.add_argument("mode", choices=["up", "demo", "serve"])
    parser.add_argument(
        "--lake",
        choices=["local", "s3"],
        default="local",
        help="where the lake lives: local folders (default) or a local S3 server started and stopped with the stack",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and usage errors answer here, before the imports below that need .venv
    missing = [name for name in ("httpx", "dagster", "pipelines") if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"stack.py: {', '.join(missing)} not installed for {sys.executable}: run `make up` (it creates .venv "
            "from the lock files), or .venv/bin/python scripts/stack.py once .venv exists"
        )


# Third-party and project modules: installed in .venv (`make up` creates it).
import s3_server  # noqa: E402
from stack_dagster import (  # noqa: E402
    RunFailedError,
    dagster_yaml,
    fail_orphaned_runs,
    failed_run_check,
    migrate,
    terminate_runs,
)
from stack_processes import Program, ProgramFailedError, Supervisor, exit_with_parent, wait_ready  # noqa: E402

from dashboards import service  # noqa: E402
from pipelines.cli.replay import replay  # noqa: E402
from pipelines.cli.status import GoldNotReadyError, active_users_summary, format_summary, wait_for_gold  # noqa: E402
from pipelines.defs import build_definitions  # noqa: E402
from warehouse.marts import MartError  # noqa: E402
from warehouse.settings import STACK_S3_ENV, Settings  # noqa: E402
from warehouse.sources import LOCAL_SOURCE, ensure_local_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [
    ROOT / "samples" / name
    for name in (
        "web_access_2015.log",
        "onlineshop_2019.csv",
        "ecom_scenarios_2024.csv.gz",
        "ui_demo.ndjson",
        "geo_demo.ndjson",
    )
]
#: The ecom sample's users (a slowly changing dimension), used by ``up``/``demo`` unless
#: ``EVENTLAKE_USERS_PATH`` names another source.
USERS_SAMPLE = ROOT / "samples" / "ecom_scenarios_2024_users.csv"
BIN = Path(sys.executable).parent
#: ``--lake s3``: the local S3 server's port (RGW's usual one) and the hot and cold roots' buckets.
S3_PORT = 7480
S3_BUCKETS = ("eventlake-hot", "eventlake-cold")


def say(message: str) -> None:
    print(f"[eventlake] {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def prepare(settings: Settings, mode: str) -> dict[str, str]:
    """Create the data folder's layout and Dagster's config; return what the processes' environment adds."""
    data_dir = settings.data_dir.resolve()
    dagster_home = data_dir / "dagster"
    for folder in (data_dir / "logs", dagster_home):
        folder.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(dagster_yaml(settings.dagster_postgres_url is not None))
    # One directory per start for the API workers' Prometheus samples (multiprocess mode).
    metrics_dir = data_dir / "run" / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "EVENTLAKE_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if mode != "serve" and settings.users_path is None:
        env["EVENTLAKE_USERS_PATH"] = str(USERS_SAMPLE)
    return env


def programs(settings: Settings, env: dict[str, str]) -> list[Program]:
    """The stack's programs in start order (supervisord stops them in reverse)."""
    workspace = str(ROOT / "workspace.yaml")
    ingest = [sys.executable, "-m", "uvicorn", "ingest_worker:app", "--app-dir", str(ROOT / "scripts")]
    ingest += ["--host", settings.ingest_host, "--port", str(settings.ingest_port)]
    # The API writes its own JSON request log (no query strings, no payloads).
    ingest += ["--workers", str(settings.ingest_workers), "--no-access-log"]
    dagster_port = str(settings.dagster_port)
    found = [
        Program("ingest_api", ingest, env, priority=100),
        Program(
            "dagster_webserver",
            [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", dagster_port],
            env,
            200,
        ),
        # Runs are started by the daemon's code servers and inherit its niceness (Linux `nice`).
        Program(
            "dagster_daemon",
            ["nice", "-n", str(settings.pipeline_nice), str(BIN / "dagster-daemon"), "run", "-w", workspace],
            env,
            300,
        ),
    ]
    if settings.superset:
        data_dir = settings.data_dir.resolve()
        superset_env = {k: v for k, v in service.environment(data_dir).items() if os.environ.get(k) != v}
        found.append(Program("superset", service.start_args(settings.superset_port), superset_env, 400))
    return found


def launch(supervisor: Supervisor, name: str) -> None:
    """Start program ``name`` and say so."""
    say(f"started {name} (pid {supervisor.start_program(name)}), log: {supervisor.log(name)}")


def watcher(supervisor: Supervisor) -> Callable[[], None]:
    """A health check that reports restarts and raises :class:`ProgramFailedError` when one gave up."""

    def check() -> None:
        for note in supervisor.check():
            say(note)

    return check


def start(settings: Settings, supervisor: Supervisor, env: dict[str, str], write_key: str) -> str:
    """Start the programs in order, each once the one before answers; return the ingest API's URL.

    Raises:
        ProgramFailedError: a program did not start or answer in time.
        subprocess.CalledProcessError: Dagster's storage migration failed.
    """
    data_dir = settings.data_dir.resolve()
    logs, dagster_home = data_dir / "logs", data_dir / "dagster"
    supervisor.start(programs(settings, env))
    healthy = watcher(supervisor)
    launch(supervisor, "ingest_api")
    # Dagster's storage is created or upgraded once, before its processes start.
    migrate(dagster_home, {**os.environ, **env}, logs / "dagster_migrate.log", ROOT)
    for run_id in fail_orphaned_runs(dagster_home):
        say(f"marked run {run_id}, left running by an earlier stack, as failed")
    launch(supervisor, "dagster_webserver")
    api_url = f"http://{settings.ingest_host}:{settings.ingest_port}"
    wait_ready(f"{api_url}/healthz", 60, "ingest API", healthy)
    wait_ready(f"http://127.0.0.1:{settings.dagster_port}/server_info", 180, "Dagster", healthy)
    launch(supervisor, "dagster_daemon")
    say(
        f"ingest API at {api_url} ({settings.ingest_workers} workers), "
        f"Dagster UI at http://127.0.0.1:{settings.dagster_port}"
    )
    say(
        f"source {LOCAL_SOURCE!r} write key: {write_key} (kept in {settings.local_key_path}); "
        f"send it as X-Write-Key or Basic auth"
    )
    if settings.superset:
        start_superset(settings, supervisor)
    return api_url


def start_superset(settings: Settings, supervisor: Supervisor) -> None:
    """Initialize, start and provision Superset; print the admin credentials when they are new.

    Raises:
        service.SupersetError: a set-up or provisioning step failed.
        ProgramFailedError: Superset did not start or answer in time.
    """
    data_dir = settings.data_dir.resolve()
    env = service.environment(data_dir)
    account = service.admin(data_dir)
    setup_log = data_dir / "logs" / "superset_setup.log"
    say("setting up Superset (metadata database, admin user, roles) …")
    service.initialize(env, account, setup_log)
    launch(supervisor, "superset")
    url = f"http://127.0.0.1:{settings.superset_port}"
    wait_ready(f"{url}/health", 180, "Superset", watcher(supervisor))
    service.provision(env, account, url, settings.serving_file, setup_log)
    say(
        f"Superset at {url}: dashboards Overview, Audience, Funnels, Forms, Components, Errors, Retention and Data "
        f"quality ({url}/dashboard/list/; start at {url}/superset/dashboard/eventlake-overview/)"
    )
    if account.generated:
        say(
            f"Superset admin login (shown once; kept in {data_dir / 'superset' / 'admin.json'}): "
            f"{account.username} / {account.password}"
        )
    elif not os.environ.get("SUPERSET_ADMIN_USER"):
        say(f"Superset admin login: user {account.username!r}, password in {data_dir / 'superset' / 'admin.json'}")


def replay_and_report(
    settings: Settings, supervisor: Supervisor, api_url: str, write_key: str, started_at: float
) -> None:
    """Replay the samples, wait until gold covers them and print DAU/MAU per app.

    ``started_at`` is the CLI's start (``time.monotonic()``), for the time it took in all.

    Raises:
        GoldNotReadyError: gold did not catch up within ``settings.gold_timeout_s``.
        RunFailedError: a pipeline run failed meanwhile.
        ProgramFailedError: a program could not be kept running.
    """
    replay_started = datetime.now(UTC)
    say("replaying the bundled samples through POST /v1/events …")
    result = replay(SAMPLES, api_url, write_key, progress=sys.stderr.isatty())
    say(
        f"acknowledged {result.accepted} events ({result.rejected} payloads rejected), "
        f"last bronze version {result.bronze_version}"
    )
    timeout_s = settings.gold_timeout_s
    say(f"waiting for gold to cover bronze version {result.bronze_version} (limit {timeout_s:.0f} s) …")
    runs_ok = failed_run_check(settings.data_dir.resolve() / "dagster", replay_started)
    healthy = watcher(supervisor)

    def check() -> None:
        healthy()
        runs_ok()

    waited = wait_for_gold(settings.serving_file, result.bronze_version or 0, timeout_s, check=check)
    say(f"gold is up to date ({waited:.0f} s after the replay, {time.monotonic() - started_at:.0f} s in all)")
    print(f"\nDAU / MAU per app ({settings.reporting_timezone} days; people, bots excluded):\n")
    print(format_summary(active_users_summary(settings.serving_file)), end="\n\n", flush=True)


def serve(supervisor: Supervisor, message: str) -> NoReturn:
    """Keep serving until a signal ends the CLI, reporting the restarts supervisord makes.

    Raises:
        ProgramFailedError: supervisord gave up restarting a program, or exited.
    """
    say(message)
    healthy = watcher(supervisor)
    while True:
        healthy()
        time.sleep(1)


def stop(supervisor: Supervisor, dagster_home: Path) -> None:
    """Terminate the Dagster runs in progress, then stop every program and supervisord."""
    # A second Ctrl-C (or a supervisor forwarding the first one again) must not abort the
    # cleanup half-way and leave servers running: ignore it from here on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if supervisor.proc is None or supervisor.proc.poll() is not None:
        return
    say("stopping: the Dagster runs in progress end their step first, then every program (up to ~30 s) …")
    terminate_runs(dagster_home)
    supervisor.stop()
    say("stopped every process of the stack")


def start_object_store(data_dir: Path) -> s3_server.S3Server:
    """Start the persistent local S3 server of ``--lake s3`` (Ceph RGW, its data under
    ``<data_dir>/s3``, on :data:`S3_PORT` the first time) with the lake's two buckets, and point
    this process's environment (which every program inherits) at it: the hot root
    ``s3://eventlake-hot/lake``, the cold root ``s3://eventlake-cold/cold``. The same settings go
    to ``<data_dir>/s3/eventlake.env`` (owner-only) while the stack runs, where the CLIs in other
    shells read them (:func:`warehouse.settings.read_settings`).

    Raises:
        FileNotFoundError: the Ceph packages are missing (``make up LAKE=s3`` installs them).
        RuntimeError: the server did not come up (its logs under ``<data_dir>/s3/log``).
    """
    root = data_dir / "s3"
    if not (root / "server.json").exists() and not port_free(S3_PORT):
        raise RuntimeError(f"port {S3_PORT} on 127.0.0.1 is in use: the S3 server needs it")
    say(f"starting the local S3 server (Ceph RGW, data under {root}) …")
    server = s3_server.start(root, persistent=True, port=S3_PORT)
    for bucket in S3_BUCKETS:
        server.create_bucket(bucket)
    settings = server.settings(f"s3://{S3_BUCKETS[0]}/lake", f"s3://{S3_BUCKETS[1]}/cold")
    os.environ.update(settings)
    env_file = data_dir / STACK_S3_ENV  # the CLIs in other shells read it while the stack runs
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    say(f"S3 server at {server.endpoint}: hot root s3://{S3_BUCKETS[0]}/lake, cold root s3://{S3_BUCKETS[1]}/cold")
    return server


def main() -> int:
    args = parse_args()
    started_at = time.monotonic()
    handler = logging.StreamHandler(sys.stdout)  # the helpers' warnings, said like the CLI's lines
    handler.setFormatter(logging.Formatter("[eventlake] %(message)s"))
    logging.getLogger("eventlake.stack").addHandler(handler)
    data_dir = Settings().data_dir.resolve()
    if args.lake == "local":
        (data_dir / STACK_S3_ENV).unlink(missing_ok=True)  # left by an S3 stack that was killed
        return run(args.mode, started_at)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    exit_with_parent()
    object_store = None
    try:
        object_store = start_object_store(data_dir)
        return run(args.mode, started_at)
    except (FileNotFoundError, RuntimeError) as exc:
        say(f"ERROR: {exc}")
        return 1
    finally:
        if object_store is not None:
            (data_dir / STACK_S3_ENV).unlink(missing_ok=True)
            object_store.stop()
            say("stopped the S3 server")


def run(mode: str, started_at: float) -> int:
    """Start the stack, then replay and report (``up``, ``demo``) and serve (``up``, ``serve``) as
    ``mode`` says; stop it. Returns the exit status."""
    settings = Settings()
    try:  # what the code location will load: a malformed mart folder fails here, not after a long wait
        build_definitions(settings)
    except MartError as exc:
        say(f"ERROR: {exc}")
        return 1
    data_dir = settings.data_dir.resolve()
    env = prepare(settings, mode)
    write_key = ensure_local_source(settings)
    ports = (settings.ingest_port, settings.dagster_port) + ((settings.superset_port,) if settings.superset else ())
    for port in ports:
        if not port_free(port):
            say(f"port {port} on 127.0.0.1 is in use: stop whatever holds it (an earlier `make up`?)")
            return 1

    supervisor = Supervisor(data_dir / "run", data_dir / "logs", ROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    exit_with_parent()  # `make up` killed (even with SIGKILL) stops the stack instead of orphaning it
    # Ctrl-C must stop the stack even when it was started in the background by a script (a
    # non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        api_url = start(settings, supervisor, env, write_key)
        if mode == "serve":
            serve(supervisor, "serving an empty stack (no sample replay); press Ctrl-C to stop")
        replay_and_report(settings, supervisor, api_url, write_key, started_at)
        if mode == "demo":
            return 0
        serve(supervisor, "serving; press Ctrl-C to stop")
    except (ProgramFailedError, service.SupersetError, GoldNotReadyError, RunFailedError) as exc:
        say(f"ERROR: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(supervisor, data_dir / "dagster")


if __name__ == "__main__":
    sys.exit(main())
