"""Silver's per-row stages in worker processes give exactly what one process gives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pytest

from pipelines import transform
from pipelines.decoding import decode_fields
from pipelines.parallel import Parallelism, RowPool
from pipelines.pseudonyms import Pseudonymizer
from pipelines.scrubbing import Scrubber
from tests.integration.test_canary import payloads
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import RAW_EVENTS
from warehouse.settings import Settings

POOLED = Parallelism(workers=2, min_rows=1)
COLUMNS = ("payload", "event_type", "source_format")


def bronze(copies: int = 3) -> pa.Table:
    """The canary corpus (secrets in URLs, nested properties, stack traces…) as bronze rows."""
    ctx = RequestContext(received_at=datetime(2024, 5, 1, tzinfo=UTC), ip="203.0.113.9")
    rows = []
    for copy in range(copies):
        for i, payload in enumerate(payloads()):
            rows.extend(explode_payload({**payload, "uuid": f"e{copy}-{i}"}, ctx))
    table = pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)
    return table.append_column("_commit_version", pa.array([1] * table.num_rows, pa.int64()))


def test_pooled_decode_and_scrub_equal_one_process_row_for_row() -> None:
    changes = bronze()
    alone = transform.decode(changes)
    with RowPool(POOLED, changes.num_rows) as pool:
        assert pool.processes == 2
        pooled = transform.decode(changes, pool)
        scrubber = Scrubber()
        silver = transform.build_silver(pooled, "r", scrubber, Pseudonymizer(b"k", scrubber), pool)
    assert pooled.equals(alone)
    reference = Scrubber()
    assert silver.equals(transform.build_silver(alone, "r", reference, Pseudonymizer(b"k", reference)))
    assert scrubber.counts == reference.counts
    assert scrubber.counts["sensitive_key"] > 0 and scrubber.counts["email"] > 0


def test_small_batches_and_one_worker_stay_in_process() -> None:
    cores = os.cpu_count() or 1
    assert Parallelism(workers=2, min_rows=50_000).processes(49_999) == 1
    assert Parallelism(workers=2, min_rows=50_000).processes(50_000) == min(2, cores)
    assert Parallelism(workers=1, min_rows=1).processes(10**6) == 1
    assert Parallelism(workers=0, min_rows=1).processes(10**6) == cores  # one per core
    # from the hostile review: 64 workers on 2 cores took 152 s and 9.8 GB for 1,040 rows, and a
    # 1-row batch started a worker it could not use
    assert Parallelism(workers=64, min_rows=1).processes(10**6) == cores
    assert Parallelism(workers=2, min_rows=1).processes(1) == 1
    with RowPool(Parallelism(workers=2, min_rows=100), 99) as pool:
        empty = pl.DataFrame(schema=dict.fromkeys(COLUMNS, pl.String))
        assert (pool.processes, pool.engine) == (1, "local") and pool.map(decode_fields, empty).height == 0


def test_an_error_in_a_worker_reaches_the_caller() -> None:
    changes = bronze(1)
    payload = changes["payload"].to_pylist()
    payload[-1] = "{not json"  # the last slice is a worker's
    corrupted = changes.set_column(changes.schema.get_field_index("payload"), "payload", pa.array(payload))
    with RowPool(POOLED, corrupted.num_rows) as pool, pytest.raises(orjson.JSONDecodeError):
        transform.decode(corrupted, pool)


HOLDER = """
import multiprocessing, sys, time
sys.path.insert(0, {root!r})
import polars as pl
from pipelines.parallel import Parallelism, RowPool
from pipelines.decoding import decode_fields

if __name__ == "__main__":
    with RowPool(Parallelism(workers=2, min_rows=1), 10) as pool:
        pool.map(decode_fields, pl.DataFrame(schema=dict.fromkeys({columns!r}, pl.String)))
        print(*[p.pid for p in multiprocessing.active_children()], flush=True)
        time.sleep(120)
"""


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()  # a zombie has exited
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_silver_process_is_killed(tmp_path: Path) -> None:
    # From the hostile review: after SIGKILL of the parent the workers lived on under PID 1.
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(root=str(Path(__file__).resolve().parents[2]), columns=COLUMNS))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    workers = [int(pid) for pid in holder.stdout.readline().split()]
    if os.cpu_count() == 1:
        pytest.skip("one core: no worker processes")
    assert workers and all(alive(pid) for pid in workers)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


@pytest.mark.parametrize(
    "address", ["ray://10.0.0.7:10001", "10.0.0.7", "10.0.0.7:head", ":6379", "10.0.0.7:99999", "[::1]:6379"]
)
def test_a_ray_address_is_host_and_port(address: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EVENTLAKE_RAY_ADDRESS must be host:port"):
        Settings(data_dir=tmp_path, ray_address=address)
    assert Settings(data_dir=tmp_path, ray_address="10.0.0.7:6379").ray_address == "10.0.0.7:6379"


UNREACHABLE = """
import logging, sys, time
sys.path.insert(0, {root!r})
from pipelines import transform
from pipelines.parallel import Parallelism, RowPool
from tests.unit.test_parallel import bronze

logging.basicConfig(level=logging.WARNING)
changes = bronze(1)
started = time.monotonic()
with RowPool(Parallelism(workers=2, min_rows=1, ray_address="127.0.0.1:{port}"), changes.num_rows) as pool:
    decoded = transform.decode(changes, pool)
print(pool.engine, decoded.equals(transform.decode(changes)), round(time.monotonic() - started))
"""


@pytest.mark.parametrize("listener", ["nothing", "a server that never answers"])
def test_an_unreachable_ray_cluster_leaves_the_batch_on_this_host(listener: str) -> None:
    # From trying it: ray.init waited minutes for a head that was not there, and for ever (the
    # breaker's run) on a port where a server accepted connections and never answered.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if listener == "nothing":
        server.close()
    else:
        threading.Thread(target=lambda: [server.accept() for _ in range(64)], daemon=True).start()
    # In a fresh process: a process connected to a cluster keeps that connection.
    script = UNREACHABLE.format(root=str(Path(__file__).resolve().parents[2]), port=port)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    server.close()
    engine, equal, seconds = out.stdout.split()
    assert engine == ("processes" if (os.cpu_count() or 1) > 1 else "local")
    assert equal == "True" and int(seconds) < 20
    assert "unreachable" in out.stderr
