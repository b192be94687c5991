"""The ingest API served by uvicorn on loopback, writing a real bronze Delta table."""

from __future__ import annotations

import gzip
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pytest

from tests.conftest import ApiServer, Env, start_api
from warehouse.contract.rows import event_id_for
from warehouse.lake.tables import RAW_EVENTS

pytestmark = pytest.mark.integration


def bronze(env: Env) -> pl.DataFrame:
    return pl.read_delta(env.lake.uri(RAW_EVENTS))


def test_health(api: ApiServer) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}


def test_bad_payload_in_a_batch_is_rejected_by_index_and_the_rest_lands(api: ApiServer, env: Env) -> None:
    batch = [
        {"uuid": "g1", "timestamp": "2024-05-01T10:00:00Z", "user": "u1", "events": {"click": {"id": "buy"}}},
        {"timestamp": "2024-05-01T10:00:00Z", "user": "u1"},
        {"uuid": "g2", "timestamp": "not a time"},
        "just a string",
        {"uuid": "g3", "timestamp": 1714557600000, "events": {"scroll": 40, "cancel": {}}},
    ]
    response = api.post("/v1/events", json=batch, headers={"User-Agent": "UA/1"})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "uuid"), (2, "timestamp"), (3, None)]
    rows = bronze(env)
    assert sorted(rows["event_id"].to_list()) == sorted(
        [event_id_for("g1", "click"), event_id_for("g3", "scroll"), event_id_for("g3", "cancel")]
    )
    assert set(rows["user_agent"]) == {"UA/1"}
    assert set(rows["ip"]) == {"127.0.0.1"}
    assert body["bronze_version"] == env.lake.version(RAW_EVENTS)


def test_single_object_is_accepted(api: ApiServer, env: Env) -> None:
    response = api.post("/v1/events", json={"uuid": "one", "timestamp": 0})
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert bronze(env)["event_type"].to_list() == ["page_view"]


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{not json", "invalid_json"), (b"42", "invalid_body"), (b"", "invalid_json")],
)
def test_non_json_or_wrong_top_level_is_400(api: ApiServer, body: bytes, error: str) -> None:
    response = api.post("/v1/events", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_oversized_body_is_413_and_stores_nothing(api: ApiServer, env: Env) -> None:
    payload = [{"uuid": f"u{i}", "timestamp": 0, "events": {"x": "y" * 1000}} for i in range(1200)]
    response = api.post("/v1/events", json=payload)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    # a chunked body without Content-Length is counted while it streams
    chunks = (b"[" + b'{"uuid":"x","timestamp":0},' * 40_000 + b"{}]",)
    response = api.post("/v1/events", content=iter(chunks))
    assert response.status_code == 413
    assert bronze(env).height == 0


def test_unknown_route_is_json_404(api: ApiServer) -> None:
    response = httpx.get(f"{api.url}/v1/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


def test_concurrent_requests_share_group_commits_and_all_are_durable(api: ApiServer, env: Env) -> None:
    def send(i: int) -> dict:
        batch = [{"uuid": f"c{i}-{j}", "timestamp": 0, "user": "u"} for j in range(10)]
        return api.post("/v1/events", json=batch, timeout=30).json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(64)))
    assert sum(a["accepted"] for a in answers) == 640
    assert bronze(env)["event_id"].n_unique() == 640
    # group commit: fewer commits than requests
    assert len({a["bronze_version"] for a in answers}) < 64


def test_failed_commit_is_503_and_acknowledges_nothing(env: Env) -> None:
    server = start_api(env)
    try:
        log_dir = env.data_dir / "lake" / RAW_EVENTS.path / "_delta_log"
        shutil.rmtree(log_dir)
        log_dir.write_bytes(b"")  # a file where the log directory should be: every commit fails
        response = server.post("/v1/events", json={"uuid": "z", "timestamp": 0}, timeout=60)
        assert response.status_code == 503
        assert response.json()["error"] == "commit_failed"
        assert "accepted" not in response.json()
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)


@pytest.mark.parametrize("header", [{"Content-Encoding": "gzip"}, {}])
def test_gzip_bodies_with_or_without_the_header_are_accepted(api: ApiServer, env: Env, header: dict) -> None:
    body = gzip.compress(b'[{"uuid": "gz", "timestamp": 0, "user": "u"}]')
    response = api.post("/v1/events", content=body, headers=header)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert bronze(env)["event_id"].to_list() == [event_id_for("gz", "page_view")]


def test_gzip_bomb_is_413_and_broken_gzip_is_400(api: ApiServer, env: Env) -> None:
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")  # ~50 KB on the wire, 50 MB inflated
    assert len(bomb) < 1_048_576
    response = api.post("/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["detail"]["decompressed"] is True
    response = api.post("/v1/events", content=b"\x1f\x8bnot really gzip")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_gzip"
    response = api.post("/v1/events", content=b"{}", headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert bronze(env).height == 0
    assert httpx.get(f"{api.url}/healthz").status_code == 200


def test_browser_beacons_cors_preflight_and_text_plain(api: ApiServer, env: Env) -> None:
    preflight = httpx.options(
        f"{api.url}/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    beacon = httpx.post(  # navigator.sendBeacon(url, string) sends text/plain
        f"{api.url}/v1/events",
        content=b'{"uuid": "beacon", "timestamp": 0, "session": "s", "writeKey": "%s"}' % api.key.encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"},
    )
    assert beacon.status_code == 202
    assert beacon.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    assert bronze(env)["event_id"].to_list() == [event_id_for("beacon", "page_view")]


def test_hostile_payloads_are_rejected_by_index_and_good_ones_still_land(api: ApiServer, env: Env) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    amplifier = {"uuid": "amp", "timestamp": 0, "page": "A" * 200_000, "events": {f"e{i}": 0 for i in range(100)}}
    batch = [
        {"uuid": "good-1", "timestamp": 0, "user": "u"},
        {"uuid": "deep", "timestamp": 0, "events": {"click": deep}},
        {"uuid": "late", "timestamp": "9999-12-31T23:59:59-01:00"},
        amplifier,
        {"uuid": "good-2", "timestamp": 0, "user": "u"},
    ]
    response = api.post("/v1/events", json=batch, timeout=60)
    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    assert [r["index"] for r in response.json()["rejected"]] == [1, 2, 3]
    assert sorted(bronze(env)["event_id"].to_list()) == sorted(
        [event_id_for("good-1", "page_view"), event_id_for("good-2", "page_view")]
    )


def test_too_many_payloads_is_413_and_trailing_slash_is_json_404(api: ApiServer) -> None:
    response = api.post("/v1/events", content=b"[" + b"1," * 10_000 + b"1]")
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_payloads"
    response = api.post("/v1/events/", json={"uuid": "x", "timestamp": 0})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
