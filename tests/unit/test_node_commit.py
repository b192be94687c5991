"""The node's committer link without a server: what a worker does when it reaches no committer."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from ingest_api.group_commit import CommitError, GroupCommitWriter
from ingest_api.node_commit import Node, ipc_bytes, node_name, node_of
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext, bronze_table
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS


def test_a_process_that_is_no_uvicorn_worker_is_a_node_by_itself(tmp_path: Path) -> None:
    assert node_of(str(tmp_path)) is None  # pytest is not a worker of a uvicorn master


def test_a_worker_that_reaches_no_committer_answers_503_and_says_not_ready(tmp_path: Path) -> None:
    # The node's name is held by a socket that never listens (a committer stuck before listen()):
    # the worker can neither connect nor start its own, and must refuse rather than wait forever.
    address = f"\0eventlake-test-{uuid.uuid4().hex}"
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind(address)
    lake = Lake(str(tmp_path / "lake"))
    rows = explode_payload({"uuid": "a", "timestamp": 0}, RequestContext(received_at=datetime.now(UTC)))

    failures = "eventlake_group_commit_failures_total"
    before = REGISTRY.get_sample_value(failures) or 0.0

    async def main() -> bool:
        writer = GroupCommitWriter(lake, interval_ms=50, node=Node(address, os.getpid()))
        await writer.start()
        try:
            with pytest.raises(CommitError, match="no committer"):
                await writer.submit(rows, 10)
            return await writer.committer_reachable()
        finally:
            await writer.stop()

    try:
        assert asyncio.run(main()) is False
    finally:
        squatter.close()
    assert REGISTRY.get_sample_value(failures) == before + 1  # counted, like a failed commit (new-user trial)
    dt = lake.open(RAW_EVENTS)
    assert dt is None or dt.to_pyarrow_table().num_rows == 0  # nothing stored


def test_a_batch_travels_as_an_arrow_ipc_stream_unchanged() -> None:
    ctx = RequestContext(received_at=datetime(2024, 5, 1, tzinfo=UTC), ip="192.0.2.1")
    table = bronze_table(explode_payload({"uuid": "b", "timestamp": 1714557600, "events": {"a": 1, "b": 2}}, ctx))
    assert pa.ipc.open_stream(ipc_bytes(table)).read_all().equals(table)


@pytest.mark.skipif(os.geteuid() != 0, reason="a new pid namespace needs root (CI runs as root)")
def test_the_same_master_pid_and_lake_in_another_pid_namespace_is_another_node(tmp_path: Path) -> None:
    # Regression (breaker): two containers sharing the network namespace, each with uvicorn as pid 1
    # and its own volume at the same path, got one socket name: node B's acknowledged events were
    # committed by node A's committer, into A's lake.
    code = f"from ingest_api.node_commit import node_name; print(repr(node_name(1, {str(tmp_path)!r})))"
    inside = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert inside.startswith("'\\x00eventlake-ingest-")
    assert inside != repr(node_name(1, str(tmp_path)))  # pid 1 here is another process in another namespace
    assert node_name(os.getpid(), str(tmp_path)) != node_name(os.getpid(), str(tmp_path / "other"))
