"""The lake on a real S3 server (Ceph RGW, the ``s3`` fixture): the ingest path end to end."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import polars as pl
import pytest

from tests.conftest import Env, start_api
from warehouse.contract.rows import event_id_for
from warehouse.lake.store import Lake, filesystem
from warehouse.lake.tables import RAW_EVENTS
from warehouse.settings import Settings

pytestmark = pytest.mark.integration


def s3_settings(s3: Any, bucket: str) -> dict[str, str]:
    """The environment that puts both lake roots in ``bucket`` on the server."""
    return {
        "EVENTLAKE_LAKE_URI": f"s3://{bucket}/lake",
        "EVENTLAKE_COLD_URI": f"s3://{bucket}/cold",
        "EVENTLAKE_S3_ENDPOINT": s3.endpoint,
        "EVENTLAKE_S3_ACCESS_KEY_ID": s3.access_key_id,
        "EVENTLAKE_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "EVENTLAKE_S3_ALLOW_HTTP": "true",
    }


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
        assert httpx.get(f"{server.url}/readyz", timeout=30).json() == {"status": "ready"}
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
