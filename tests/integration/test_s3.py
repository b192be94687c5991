"""The lake on a real S3 server (Ceph RGW, the ``s3`` fixture): the ingest path, the whole pipeline with
the cold tier in another bucket, and the refusal of a store that ignores conditional writes."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import polars as pl
import pyarrow.fs as pafs
import pytest

from pipelines.maintenance import tier_lake
from tests.conftest import ROOT, Env, free_port, materialize_all, start_api
from warehouse.contract.rows import event_id_for
from warehouse.lake.object_store import StoreAccessError, UnsafeStoreError, check_conditional_writes, filesystem
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.settings import Settings

pytestmark = pytest.mark.integration


def s3_settings(s3: Any, bucket: str) -> dict[str, str]:
    """The environment that puts both lake roots in ``bucket`` on the server."""
    return dict(s3.settings(f"s3://{bucket}/lake", f"s3://{bucket}/cold"))


def test_the_settings_storage_options_are_delta_rs_own(s3: Any, tmp_path: Any) -> None:
    settings = Settings(
        data_dir=tmp_path,
        s3_endpoint=s3.endpoint,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
        s3_allow_http=True,
    )
    assert settings.storage_options == s3.storage_options
    assert Settings(data_dir=tmp_path).storage_options is None  # local roots: nothing to configure


def test_the_ingest_api_commits_bronze_to_s3_and_probes_it_there(env: Env, s3: Any) -> None:
    bucket = f"t{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    server = start_api(env, s3_settings(s3, bucket), workers=2)  # the node's committer writes to S3 too
    payloads = [{"uuid": f"s3-{i}", "timestamp": 0, "user": "u"} for i in range(20)]
    try:
        for start in range(0, 20, 5):
            assert server.post("/v1/events", json=payloads[start : start + 5]).status_code == 202
        # the readiness probe writes through pyarrow's S3 filesystem with the same configuration
        assert httpx.get(f"{server.url}/readyz", timeout=30).json() == {
            "status": "ready",
            "shared_state": "per_process",
        }
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)
    lake = Lake(f"s3://{bucket}/lake", storage_options=s3.storage_options)
    dt = lake.open(RAW_EVENTS)
    assert dt is not None
    stored = pl.from_arrow(dt.to_pyarrow_table(columns=["event_id"]))["event_id"].to_list()
    assert sorted(stored) == sorted(event_id_for(str(p["uuid"]), "page_view") for p in payloads)
    fs, base = filesystem(f"s3://{bucket}/lake", s3.storage_options)
    assert fs.get_file_info(f"{base}/{RAW_EVENTS.path}/_delta_log/00000000000000000000.json").is_file
    assert not (env.data_dir / "lake").exists()  # nothing went to the local default root


def test_a_store_that_ignores_conditional_writes_is_refused_at_start(env: Env, s3: Any) -> None:
    """Negative control: HAProxy in front of RGW answers every refused creation (412) with a 200 and
    an ETag, as a store that ignores ``If-None-Match`` would. The lake refuses that store, and so does
    the ingest API at its start, with a message that says why; nothing is written to bronze."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import balancer  # noqa: PLC0415

    bucket = f"t{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    lying = balancer.start(
        env.data_dir / "haproxy",
        free_port(),
        [s3.endpoint.removeprefix("http://")],
        check_path="/",
        extra=[
            'http-response set-header ETag "\\"lost\\"" if { status 412 }',
            "http-response set-status 200 if { status 412 }",
        ],
    )
    try:
        options = {**s3.storage_options, "AWS_ENDPOINT_URL": lying.url}
        with pytest.raises(UnsafeStoreError, match="ignores conditional writes"):
            Lake(f"s3://{bucket}/lake", storage_options=options)
        check_conditional_writes(f"s3://{bucket}/lake", s3.storage_options)  # RGW itself honours them
        with pytest.raises(StoreAccessError, match=r"cannot write to s3://no-such-bucket/lake at http://"):
            Lake("s3://no-such-bucket/lake", storage_options=s3.storage_options)  # a clear message, not a trace
        with pytest.raises(RuntimeError, match="ignores conditional writes"):
            start_api(env, {**s3_settings(s3, bucket), "EVENTLAKE_S3_ENDPOINT": lying.url})
    finally:
        lying.stop()
    fs, base = filesystem(f"s3://{bucket}/lake", s3.storage_options)
    assert fs.get_file_info(f"{base}/{RAW_EVENTS.path}").type == pafs.FileType.NotFound


def test_the_pipeline_runs_on_s3_with_the_cold_tier_in_another_bucket(
    env: Env, s3: Any, setting: Callable[[str, str], None]
) -> None:
    """Bronze (through the API), silver, gold and a tier move, with the hot and cold roots in two
    buckets of the S3 server: gold counts every user, the moved days are read from the cold bucket,
    and nothing is written to the local lake folders (only the gold DuckDB file and its snapshot)."""
    hot, cold = f"h{uuid.uuid4().hex[:12]}", f"c{uuid.uuid4().hex[:12]}"
    s3.create_bucket(hot)
    s3.create_bucket(cold)
    for name, value in {**s3_settings(s3, hot), "EVENTLAKE_COLD_URI": f"s3://{cold}/cold"}.items():
        setting(name, value)
    today = datetime.now(UTC).date()
    old, recent = today - timedelta(days=200), today - timedelta(days=2)
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"  # not a bot: counted
    events = [
        {"uuid": f"e{day}-{user}", "timestamp": f"{day}T12:00:00Z", "user": f"user{user}", "app": "shop"}
        | {"userAgent": browser}
        for day in (old, recent)
        for user in range(5)
    ]
    server = start_api(env, workers=2)
    try:
        assert server.post("/v1/events", json=events).status_code == 202
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)
    materialize_all(env)
    lake = env.lake
    report = tier_lake(lake, env.serving, env.settings().tier_policy(), today)
    assert [move.partition for move in report.moved] == [old.isoformat()]
    assert lake.cold is not None and lake.cold.root == f"s3://{cold}/cold"
    union = pl.from_arrow(lake.dataset(EVENTS).to_table(columns=["event_id", "event_date"]))
    assert isinstance(union, pl.DataFrame) and union.height == 10 and union["event_id"].n_unique() == 10
    cold_days = pl.from_arrow(lake.cold.dataset(EVENTS).to_table(columns=["event_date"]))["event_date"].unique()
    assert cold_days.to_list() == [old]
    materialize_all(env)  # a later run: the move is not a deletion to gold
    with duckdb.connect(str(env.serving), read_only=True) as con:
        dau = dict(con.execute("select day, dau from daily_active_users where app = 'shop'").fetchall())
    assert dau[old] == 5 and dau[recent] == 5
    assert not (env.data_dir / "lake").exists() and not (env.data_dir / "cold").exists()


def test_the_persistent_server_keeps_its_objects_port_and_keys_across_a_restart() -> None:
    """What ``make up LAKE=s3`` relies on: the file-backed server started again on its folder serves
    the same endpoint and credentials, with the objects written before the stop."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import s3_server  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="eventlake-rgw-"))
    try:
        first = s3_server.start(root, persistent=True, size_mb=1024)
        first.create_bucket("kept")
        fs, _ = filesystem("s3://kept", first.storage_options)
        with fs.open_output_stream("kept/object") as out:
            out.write(b"acknowledged")
        first.stop()
        second = s3_server.start(root, persistent=True)
        try:
            assert second.storage_options == first.storage_options
            fs, _ = filesystem("s3://kept", second.storage_options)
            assert fs.open_input_stream("kept/object").read() == b"acknowledged"
        finally:
            second.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
