"""Several ingest nodes (separate uvicorn masters, each with its own bronze committer: separate Delta
writers) behind a real load balancer (HAProxy), all appending to one bronze table on a real S3
server (Ceph RGW): a node killed mid-load loses no acknowledged event and no commit."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.conftest import BalancedPorts, Env, start_api
from tests.integration.test_s3 import s3_settings
from warehouse.contract.rows import event_id_for

pytestmark = pytest.mark.integration

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def client(
    url: str, key: str, prefix: str, halt: threading.Event, acked: list[tuple[int, list[str]]], lock: threading.Lock
) -> None:
    """Requests of 20 events through the balancer until ``halt``; no request is sent twice. Each
    acknowledged request's ``(bronze_version, event ids)`` goes to ``acked``."""
    with httpx.Client(headers={"X-Write-Key": key}, timeout=30) as http:
        n = 0
        while not halt.is_set():
            batch = [
                {"uuid": f"{prefix}-{n}-{j}", "timestamp": 0, "user": "u", "userAgent": BROWSER} for j in range(20)
            ]
            n += 1
            try:
                answer = http.post(f"{url}/v1/events", json=batch)
            except httpx.TransportError:
                continue
            if answer.status_code == 202:
                with lock:
                    acked.append(
                        (answer.json()["bronze_version"], [event_id_for(p["uuid"], "page_view") for p in batch])
                    )


def wait_for_acks(acked: list[tuple[int, list[str]]], lock: threading.Lock, count: int, timeout_s: float = 60) -> int:
    """Wait until ``count`` requests were acknowledged; how many there are then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= count:
                return len(acked)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} requests acknowledged in {timeout_s} s")


def test_a_node_killed_mid_load_loses_no_acknowledged_event_or_commit(
    env: Env, s3: Any, balancer: BalancedPorts
) -> None:
    bucket = f"n{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    settings = s3_settings(s3, bucket)
    nodes = [start_api(env, settings, workers=2, port=port) for port in balancer.ports[:3]]
    acked: list[tuple[int, list[str]]] = []
    lock, halt = threading.Lock(), threading.Event()
    try:
        time.sleep(1.5)  # every node passed a health check: in rotation
        clients = [
            threading.Thread(target=client, args=(balancer.url, nodes[0].key, f"c{i}", halt, acked, lock))
            for i in range(6)
        ]
        for thread in clients:
            thread.start()
        before_kill = wait_for_acks(acked, lock, 10)
        os.killpg(nodes[1].proc.pid, signal.SIGKILL)  # the master, its workers and its committer
        nodes[1].proc.wait(timeout=10)
        wait_for_acks(acked, lock, before_kill + 10)
        halt.set()
        for thread in clients:
            thread.join(timeout=60)
        with lock:
            after_kill = len(acked) - before_kill
    finally:
        halt.set()
        for node in (nodes[0], nodes[2]):
            node.proc.terminate()
            node.proc.wait(timeout=30)
    assert before_kill >= 10 and after_kill >= 10  # load before and after the kill
    bronze = DeltaTable(f"s3://{bucket}/lake/bronze/raw_events", storage_options=s3.storage_options)
    # The change feed gives each row the version of the commit that added it.
    feed = pl.from_arrow(pa.table(bronze.load_cdf(starting_version=0)).select(["event_id", "_commit_version"]))
    assert isinstance(feed, pl.DataFrame)
    counts = Counter(feed["event_id"].to_list())
    version_of = dict(zip(feed["event_id"].to_list(), feed["_commit_version"].to_list(), strict=True))
    for version, event_ids in acked:
        # exactly once, in the very commit the answer named: no acknowledged commit was overwritten or lost
        assert all(counts[event_id] == 1 for event_id in event_ids)
        assert {version_of[event_id] for event_id in event_ids} == {version}
    assert max(counts.values()) == 1  # no request was sent twice, so no event is there twice
    writers = {entry.get("eventlake.writer") for entry in bronze.history() if entry.get("operation") == "WRITE"}
    assert len(writers) >= 3  # the three nodes' committers (and the killed node's successor, if any) wrote
