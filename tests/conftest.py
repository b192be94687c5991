"""Shared fixtures: a real ingest API under uvicorn, a real lake under tmp_path, real Dagster runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# In-process runs read settings from the environment: never let them write a key under ./data.
os.environ.setdefault("EVENTLAKE_PSEUDONYM_KEY", "tests-only-pseudonym-key")

from pipelines.defs import pipeline_assets, pipeline_resources
from warehouse.gold import GoldOptions
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS
from warehouse.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

_silver_ids = iter(range(10**9))


def silver_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Silver rows for gold tests: each dict gives some columns, the rest take test defaults.

    Defaults: a fresh ``event_id``, ``event_type`` page_view, app ``a``, source ``web``, native
    format, ``event_date`` the UTC day of ``timestamp``, ``received_at`` = ``timestamp``, not a
    bot; ``properties`` may be a dict (dumped to JSON) or JSON text. Other columns are null.
    """
    full = []
    for row in rows:
        ts = row["timestamp"]
        properties = row.get("properties")
        full.append(
            {
                "event_id": f"s{next(_silver_ids)}",
                "event_type": "page_view",
                "app": "a",
                "source": "web",
                "source_format": "native",
                "event_date": ts.astimezone(UTC).date(),
                "received_at": ts,
                "is_bot": False,
                **row,
                "properties": orjson.dumps(properties).decode() if isinstance(properties, dict) else properties,
            }
        )
    return pa.Table.from_pylist(full, schema=EVENTS.schema)


@dataclass(frozen=True)
class Env:
    """Where one test's running system writes: lake root and gold DuckDB file."""

    data_dir: Path

    @property
    def lake_root(self) -> str:
        return str(self.data_dir / "lake")

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def serving(self) -> Path:
        return self.data_dir / "serving" / "serving.duckdb"

    @property
    def lake(self) -> Lake:
        return self.settings().lake()

    def settings(self) -> Settings:
        """The settings of a process writing here: ``EVENTLAKE_*`` from the environment as it is now."""
        return Settings(data_dir=self.data_dir)

    def resources(self) -> dict[str, Any]:
        """The Dagster resources of a code location writing here (:func:`pipelines.defs.pipeline_resources`)."""
        return pipeline_resources(self.settings())


@pytest.fixture
def env(tmp_path: Path) -> Env:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Env(data_dir)


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """``setting(name, value)`` sets an ``EVENTLAKE_*`` variable for this test: what a process started
    afterwards (``materialize_all``, an API server, a CLI) reads at its start."""
    yield monkeypatch.setenv
    monkeypatch.undo()


def gold_options() -> GoldOptions:
    """How gold is computed under the ``EVENTLAKE_*`` variables as they are now (``setting`` changes them)."""
    return Settings().gold_options()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    key: str

    @property
    def auth(self) -> dict[str, str]:
        """The local source's write key as the X-Write-Key header."""
        return {"X-Write-Key": self.key}

    def post(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """POST to ``path`` with the local source's write key (unless ``headers`` set one)."""
        return httpx.post(f"{self.url}{path}", headers={**self.auth, **(headers or {})}, **kwargs)


def start_api(
    env: Env, extra_env: dict[str, str] | None = None, workers: int = 1, port: int | None = None
) -> ApiServer:
    """Start ``uvicorn ingest_api.main:app`` on a free loopback port and wait for /healthz."""
    port = port or free_port()
    log = env.data_dir / f"api-{port}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ingest_api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",  # the API writes its own JSON request log (no query strings, no payloads)
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "EVENTLAKE_DATA_DIR": str(env.data_dir),
            "EVENTLAKE_FLUSH_INTERVAL_MS": "50",
            **(extra_env or {}),
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a crash test can kill -9 it with its workers
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return ApiServer(url, proc, log, (env.data_dir / "local_write_key").read_text().strip())
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"uvicorn did not start: {log.read_text()}")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3 server for the session: a single-node Ceph RGW on 127.0.0.1, objects in RAM
    (``scripts/s3_server.py``; the Debian packages are installed by ``make packages`` when missing)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import s3_server  # noqa: PLC0415

    server = s3_server.start(tmp_path_factory.mktemp("rgw"))
    yield server
    server.stop()


@dataclass
class RedisServer:
    """A running ``redis-server`` on 127.0.0.1 (Debian's package), in memory only."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_redis(port: int | None = None) -> RedisServer:
    """Start ``redis-server`` on ``port`` (a free one by default), nothing saved to disk; wait for PING."""
    port = port or free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(port, proc)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on {port}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis for the session (the ingest nodes' shared state); tests use their own key prefixes
    by flushing it first (``FLUSHDB``) where they depend on its content."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL for the session (Debian's, ``scripts/postgres_server.py``), with an empty
    ``dagster`` database; under ``/tmp`` (as root, the cluster belongs to the ``postgres`` user)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import postgres_server  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="eventlake-pg-"))
    server = postgres_server.start(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A real local Ray cluster for the session (``scripts/ray_cluster.py``): two nodes of one CPU
    and a 200 MB object store each on 127.0.0.1, its state API on the dashboard port. This process
    may connect to it as a driver (``EVENTLAKE_RAY_ADDRESS``): its environment gets
    ``ray_cluster.DRIVER_ENV`` for the session."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import ray_cluster as cluster  # noqa: PLC0415

    server = cluster.start(2, free_port(), free_port(), cpus=1, object_store_bytes=200_000_000)
    os.environ.update(cluster.DRIVER_ENV)
    yield server
    import ray  # noqa: PLC0415

    ray.shutdown()
    server.stop()


@dataclass(frozen=True)
class BalancedPorts:
    """The session's load balancer (HAProxy, ``scripts/balancer.py``): its ``url``, and the loopback
    ``ports`` of the nodes behind it, which tests start ingest nodes on (a port with no node fails
    the balancer's health checks and gets no traffic)."""

    url: str
    ports: tuple[int, ...]


@pytest.fixture(scope="session")
def balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BalancedPorts]:
    """A real load balancer for the session: HAProxy on 127.0.0.1 (round robin, ``/readyz`` checked
    every 500 ms) in front of four node ports (the Debian package is installed by ``make test``)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import balancer as haproxy  # noqa: PLC0415

    ports = tuple(free_port() for _ in range(4))
    server = haproxy.start(
        tmp_path_factory.mktemp("haproxy"), free_port(), [f"127.0.0.1:{port}" for port in ports], check_ms=500
    )
    yield BalancedPorts(server.url, ports)
    server.stop()


@pytest.fixture
def api(env: Env) -> Iterator[ApiServer]:
    server = start_api(env)
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=30)


def materialize_all(env: Env, with_purge: bool = False, **silver_config: str) -> dg.ExecuteInProcessResult:
    """Materialize silver (with its GE checks), gold, the serving snapshot and the marts' checks
    in-process, like one micro-batch run.

    Settings come from the environment as it is at the call (``setting`` changes them), like a new
    code location's. ``silver_config``: the silver step's config (``mode="replay"``, ``mode="reprocess"``
    with days…); ``with_purge``: the rescrub job's selection, with ``purged_history``.
    """
    assets = pipeline_assets(env.settings())
    result = dg.materialize(
        [*assets.derived, assets.checks, *([assets.purge] if with_purge else [])],
        resources=env.resources(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=True,
        run_config={"ops": {"silver_events": {"config": silver_config}}} if silver_config else None,
    )
    assert result.success
    return result


def stored_text(root: Path) -> dict[str, str]:
    """What every file under ``root`` holds, as text a search can look into, by relative path.

    Parquet files (data, change data, checkpoints) are decoded, every column, nested ones too: their
    pages are compressed, so a byte search would miss what they hold. DuckDB files add every table's
    rows to their raw bytes. Other files (Delta log JSON, logs, anything else) are their bytes.
    """
    texts = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            text += str(pq.read_table(path).to_pylist())
        elif path.suffix == ".duckdb":
            con = duckdb.connect(str(path), read_only=True)
            try:
                for (table,) in con.execute("select table_name from information_schema.tables").fetchall():
                    text += str(con.sql(f'select * from "{table}"').fetchall())
            finally:
                con.close()
        texts[str(path.relative_to(root))] = text
    return texts


def expectation_results(result: dg.ExecuteInProcessResult, asset: str, check: str) -> dict[str, bool]:
    """Expectation name → success, from the ``results`` metadata of suite check ``check`` on ``asset``."""
    (evaluation,) = [
        c
        for c in result.get_asset_check_evaluations()
        if (c.asset_key.to_user_string(), c.check_name) == (asset, check)
    ]
    results = evaluation.metadata["results"].value
    failed = evaluation.metadata["failed_expectations"].value
    assert failed == ", ".join(name for name, outcome in results.items() if not outcome["success"])  # type: ignore[union-attr]
    assert evaluation.passed == (not failed)
    return {name: outcome["success"] for name, outcome in results.items()}  # type: ignore[union-attr]


#: A mart a deployment adds (tests of the mart loader): its folder's files.
MART_YAML = """\
description: "Gold: clicks per app and day (a mart added by a deployment)."
grain: [app, source, day]
"""
CREATE_SQL = """\
create table if not exists daily_clicks (
    app varchar not null,
    source varchar not null,
    day date not null,
    clicks bigint not null,
    silver_version bigint,
    primary key (app, source, day)
);
"""
INSERT_SQL = """\
insert into daily_clicks (app, source, day, clicks)
select events.app, events.source, events.day, count(*) filter (where events.event_type = 'click')
from people_events as events
inner join refresh_days as refresh
    on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
where events.day between $first_day and $last_day
group by all
"""
VIEWS_SQL = """\
create or replace view clicks_per_day as
select app, day, sum(clicks) as clicks from daily_clicks group by app, day;
"""
EXPECTATIONS = """\
{
  "name": "daily_clicks",
  "expectations": [
    {
      "type": "expect_column_values_to_be_between",
      "kwargs": {"column": "clicks", "min_value": 0},
      "meta": {"check": "daily_clicks_clicks_not_negative", "description": "clicks >= 0"}
    }
  ]
}
"""


def add_daily_clicks(root: Path) -> Path:
    """Write a small valid mart folder, ``daily_clicks`` (clicks per app and day), under ``root``."""
    folder = root / "daily_clicks"
    folder.mkdir(parents=True)
    (folder / "mart.yaml").write_text(MART_YAML)
    (folder / "create.sql").write_text(CREATE_SQL)
    (folder / "insert.sql").write_text(INSERT_SQL)
    (folder / "views.sql").write_text(VIEWS_SQL)
    (folder / "expectations.json").write_text(EXPECTATIONS)
    return folder
