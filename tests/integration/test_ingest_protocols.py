"""Protocols, write keys, limits and odd input against the real API under uvicorn."""

from __future__ import annotations

import base64
import gzip
import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from prometheus_client.parser import text_string_to_metric_families
from segment.analytics.client import Client

from tests.conftest import ApiServer, Env, materialize_all, start_api
from warehouse.contract.rows import event_id_for
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.sources import add_source

pytestmark = pytest.mark.integration


def bronze(env: Env) -> pl.DataFrame:
    if env.lake.version(RAW_EVENTS) is None:
        return pl.DataFrame(schema={"event_id": pl.String})
    return pl.read_delta(env.lake.uri(RAW_EVENTS))


@pytest.mark.parametrize("compress", [False, True])
def test_segment_python_client_unchanged_lands_in_bronze(api: ApiServer, env: Env, compress: bool) -> None:
    errors: list[Exception] = []
    client = Client(
        write_key=api.key,
        host=api.url,
        sync_mode=True,
        gzip=compress,
        max_retries=0,
        on_error=lambda exc, _batch: errors.append(exc),
    )
    context = {"locale": "de-DE", "timezone": "Europe/Berlin", "page": {"url": "https://shop.example/cart"}}
    when = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    client.track("u-1", "Order Completed", {"total": 12.5}, context=context, timestamp=when, message_id="m-track")
    client.page("u-1", "Shop", "Cart", {"url": "https://shop.example/cart"}, timestamp=when, message_id="m-page")
    client.screen("u-1", "App", "Home", timestamp=when, message_id="m-screen")
    client.identify("u-1", {"plan": "pro", "email": "a@example.com"}, timestamp=when, message_id="m-identify")
    client.group("u-1", "g-1", {"size": 5}, timestamp=when, message_id="m-group")
    client.alias("anon-7", "u-1", timestamp=when, message_id="m-alias")
    client.flush()
    assert errors == []

    rows = bronze(env).sort("event_type")
    assert rows["event_type"].to_list() == ["alias", "group", "identify", "order_completed", "page_view", "screen_view"]
    assert set(rows["source"]) == {"local"} and set(rows["source_format"]) == {"segment"}
    assert set(rows["user_agent"]) == {f"analytics-python/{_segment_version()}"}
    # this machine's clock is right, so skew correction (received - (sentAt - timestamp)) moves
    # the event time by no more than the network delay
    assert all(abs((ts - when).total_seconds()) < 5 for ts in rows["timestamp"])
    assert set(rows["original_timestamp"]) == {"2024-05-01T10:00:00.000+00:00"}  # as the client wrote it
    assert rows["sent_at"].null_count() == 0
    track = orjson.loads(rows.filter(pl.col("event_type") == "order_completed")["payload"][0])
    assert track["properties"] == {"total": 12.5} and track["context"]["locale"] == "de-DE"
    assert "writeKey" not in track


def _segment_version() -> str:
    from segment.analytics.version import VERSION

    return VERSION


def test_single_message_routes_and_analytics_js_short_paths(api: ApiServer, env: Env) -> None:
    track = {"messageId": "t-1", "anonymousId": "a-1", "event": "Clicked", "writeKey": api.key}
    # analytics.js: one-letter path, key in the body, text/plain so no CORS preflight
    response = httpx.post(f"{api.url}/v1/t", content=orjson.dumps(track), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert response.json()["success"] is True and response.json()["accepted"] == 1
    response = api.post("/v1/identify", json={"messageId": "i-1", "userId": "u", "traits": {"plan": "pro"}})
    assert response.status_code == 200
    response = api.post("/v1/track", json={"messageId": "t-2", "userId": "u"})
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "code": "invalid_event",
        "message": "event is required for a track call and must be a string",
        "detail": "event is required for a track call and must be a string",
    }
    assert sorted(bronze(env)["event_type"].to_list()) == ["clicked", "identify"]


def test_segment_batch_rejects_bad_messages_by_index_and_stores_the_rest(api: ApiServer, env: Env) -> None:
    batch = {
        "batch": [
            {"type": "track", "messageId": "b-1", "userId": "u", "event": "Signed Up"},
            {"type": "track", "userId": "u", "event": "No Id"},
            {"type": "bogus", "messageId": "b-3", "userId": "u"},
            {"type": "page", "messageId": "b-4", "anonymousId": "a"},
        ],
        "sentAt": "2024-05-01T10:00:01Z",
    }
    response = api.post("/v1/batch", json=batch)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "messageId"), (2, "type")]
    assert sorted(bronze(env)["event_type"].to_list()) == ["page_view", "signed_up"]
    response = api.post("/v1/batch", json={"batch": [{"type": "track"}]})
    assert response.status_code == 400 and response.json()["code"] == "invalid_batch"
    response = api.post("/v1/batch", json=[1, 2])
    assert response.status_code == 400 and response.json()["success"] is False


def test_write_keys_basic_header_body_and_401(env: Env) -> None:
    web_key = add_source(env.data_dir / "sources.json", "web")
    api = start_api(env)
    try:
        event = {"uuid": "k1", "timestamp": 0, "user": "u"}
        assert httpx.post(f"{api.url}/v1/events", json=event).status_code == 401
        response = httpx.post(f"{api.url}/v1/events", json=event, headers={"X-Write-Key": "nope"})
        assert response.status_code == 401 and response.json()["error"] == "invalid_write_key"
        response = httpx.post(f"{api.url}/v1/batch", json={"batch": []}, headers={"Authorization": "Basic !!"})
        assert response.status_code == 401 and response.json()["code"] == "invalid_authorization"
        assert bronze(env).height == 0  # nothing stored for any 401

        basic = "Basic " + base64.b64encode(f"{web_key}:".encode()).decode()
        assert httpx.post(f"{api.url}/v1/events", json=event, headers={"Authorization": basic}).status_code == 202
        assert httpx.post(f"{api.url}/v1/events", json={**event, "uuid": "k2", "writeKey": web_key}).status_code == 202
        assert api.post("/v1/events", json={**event, "uuid": "k3"}).status_code == 202  # the local source
        sources = dict(bronze(env).select("event_id", "source").iter_rows())
        assert sources == {
            event_id_for("k1", "page_view"): "web",
            event_id_for("k2", "page_view"): "web",
            event_id_for("k3", "page_view"): "local",
        }
        assert web_key not in "".join(bronze(env)["payload"])
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)


def test_rate_limit_per_source_is_429_with_retry_after(env: Env) -> None:
    add_source(env.data_dir / "sources.json", "other")
    api = start_api(env, {"EVENTLAKE_RATE_LIMIT": "50/minute"})
    try:
        batch = [{"uuid": f"r{i}", "timestamp": 0, "user": "u"} for i in range(30)]
        assert api.post("/v1/events", json=batch).status_code == 202
        response = api.post("/v1/events", json=[{**p, "uuid": p["uuid"] + "b"} for p in batch])
        assert response.status_code == 429
        assert response.json()["error"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        response = api.post("/v1/events", json=[{"uuid": f"big{i}", "timestamp": 0} for i in range(51)])
        assert response.status_code == 413 and response.json()["error"] == "batch_over_rate_limit"
        assert bronze(env).height == 30
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)


def test_segment_size_limits_32kb_per_event_500kb_per_request(api: ApiServer, env: Env) -> None:
    big = {"type": "track", "messageId": "big", "userId": "u", "event": "x", "properties": {"blob": "y" * 33_000}}
    small = {"type": "track", "messageId": "small", "userId": "u", "event": "x"}
    response = api.post("/v1/batch", json={"batch": [small, big]})
    assert response.status_code == 200
    assert response.json()["rejected"][0]["reason"] == "event_too_large"
    assert "32768-byte limit" in response.json()["rejected"][0]["error"]
    response = api.post("/v1/track", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == "event_too_large"
    assert response.json()["detail"]["limit_bytes"] == 32_768
    many = {"batch": [{**small, "messageId": f"m{i}", "properties": {"p": "z" * 20_000}} for i in range(30)]}
    body = orjson.dumps(many)  # ~600 KB: over the request limit, checked before parsing
    response = api.post("/v1/batch", content=body)
    assert response.status_code == 413
    assert response.json()["detail"] == {"limit": "max_body_bytes", "limit_bytes": 512_000, "content_length": len(body)}
    assert bronze(env)["event_id"].len() == 1


def test_nul_and_lone_surrogates_do_not_break_the_batch(api: ApiServer, env: Env) -> None:
    body = (
        b'[{"uuid": "nul", "timestamp": 0, "user": "u", "page": "https://a/x\\u0000y"},'
        b' {"uuid": "sur", "timestamp": 0, "user": "u\\ud83d", "events": {"click": {"label": "\\udc00ok"}}},'
        b' {"uuid": "fine", "timestamp": 0, "user": "u"}]'
    )
    response = api.post("/v1/events", content=body)
    assert response.status_code == 202 and response.json()["accepted"] == 3
    payloads = {r["event_id"]: orjson.loads(r["payload"]) for r in bronze(env).iter_rows(named=True)}
    assert payloads[event_id_for("nul", "page_view")]["page"] == "https://a/x\ufffdy"
    assert payloads[event_id_for("sur", "click")]["user"] == "u\ufffd"
    assert payloads[event_id_for("sur", "click")]["events"]["click"]["label"] == "\ufffdok"


def test_deeply_nested_body_is_400_and_the_worker_stays_healthy(api: ApiServer) -> None:
    response = api.post("/v1/events", content=b"[" * 20_000 + b"]" * 20_000)
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    assert api.post("/v1/events", json={"uuid": "after", "timestamp": 0}).status_code == 202


def test_timestamps_naive_epoch_seconds_and_future_flags_land_in_bronze(api: ApiServer, env: Env) -> None:
    batch = [
        {"uuid": "naive", "timestamp": "2024-05-01 10:00:00", "user": "u"},
        {"uuid": "secs", "timestamp": 1714557600, "user": "u"},
        {"uuid": "future", "timestamp": "2099-01-01T00:00:00Z", "user": "u"},
        {"uuid": "absurd", "timestamp": "2400-01-01T00:00:00Z", "user": "u"},
    ]
    response = api.post("/v1/events", json=batch)
    assert response.json()["rejected"] == [
        {
            "index": 3,
            "error": "timestamp year 2400 is outside [1970, 2100)",
            "field": "timestamp",
            "reason": "invalid_timestamp",
        }
    ]
    rows = {r["event_id"]: r for r in bronze(env).iter_rows(named=True)}
    naive, secs, future = (rows[event_id_for(u, "page_view")] for u in ("naive", "secs", "future"))
    assert naive["timestamp_naive"] and not secs["timestamp_naive"]
    assert naive["timestamp"] == secs["timestamp"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert future["timestamp_in_future"] and not naive["timestamp_in_future"]


def test_metrics_and_readiness(api: ApiServer) -> None:
    assert httpx.get(f"{api.url}/readyz").json() == {"status": "ready", "shared_state": "per_process"}
    api.post("/v1/events", json=[{"uuid": "m1", "timestamp": 0, "user": "u"}, {"uuid": 5}])
    httpx.post(f"{api.url}/v1/events", json={"uuid": "m2", "timestamp": 0})  # no key: 401
    # Refusals before any route runs are answers too: counted under their route, never the raw path.
    assert api.post("/v2/events", json={}).status_code == 404
    assert api.post("/no/such/path-1234", json={}).status_code == 404
    assert httpx.get(f"{api.url}/v1/events").status_code == 405
    assert api.post("/v1/events", content=b"x", headers={"Content-Encoding": "br"}).status_code == 415
    text = httpx.get(f"{api.url}/metrics").text
    assert "path-1234" not in text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert sample("eventlake_ingest_events_total", source="local", format="native", outcome="accepted") == 1
    assert sample("eventlake_ingest_events_total", source="local", format="native", outcome="rejected") == 1
    assert sample("eventlake_ingest_rejected_events_total", reason="invalid_event") == 1
    requests = "eventlake_ingest_requests_total"
    assert sample(requests, route="/v1/events", source="local", format="native", status="202") == 1
    assert sample(requests, route="/v1/events", source="unknown", format="native", status="401") == 1
    assert sample(requests, route="(unmatched)", source="unknown", format="unknown", status="404") == 2
    # Refused before the route ran: the format is the route's, the source is not known yet.
    assert sample(requests, route="/v1/events", source="unknown", format="native", status="405") == 1
    assert sample(requests, route="/v1/events", source="unknown", format="native", status="415") == 1
    assert sample(requests, route="/readyz", source="unknown", format="unknown", status="200") == 1
    assert sample("eventlake_group_commit_seconds_count") == 1
    assert sample("eventlake_buffer_events") == 0
    # one JSON log line per request, without payload contents
    lines = [orjson.loads(line) for line in api.log.read_text().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("event") == "ingest_request"]
    assert [(r["route"], r["status"], r["accepted"], r["rejected"]) for r in logged] == [
        ("/v1/events", 202, 1, 1),
        ("/v1/events", 401, 0, 0),
        ("(unmatched)", 404, 0, 0),
        ("(unmatched)", 404, 0, 0),
        ("/v1/events", 405, 0, 0),
        ("/v1/events", 415, 0, 0),
    ]  # the successful probe is counted, not logged
    assert "m1" not in api.log.read_text()


def test_retry_with_another_sent_at_is_one_silver_row_first_received_wins(api: ApiServer, env: Env) -> None:
    # The same messages sent twice; the retry's sentAt is a day later, so its corrected
    # timestamp falls on another day. Dedup by event_id is global: the first copy wins.
    batch = {
        "batch": [
            {
                "type": "track",
                "messageId": f"d-{i}",
                "userId": f"u{i}",
                "event": "Clicked",
                "timestamp": "2024-05-01T10:00:00Z",
            }
            for i in range(3)
        ]
    }
    first = api.post("/v1/batch", json={**batch, "sentAt": "2024-05-01T10:00:00Z"}).json()
    retry = api.post("/v1/batch", json={**batch, "sentAt": "2024-05-02T10:00:00Z"}).json()
    assert first["accepted"] == retry["accepted"] == 3
    copies = bronze(env).group_by("event_id").agg(pl.col("timestamp").dt.date().n_unique().alias("days"))
    assert copies["days"].to_list() == [2, 2, 2]  # bronze keeps both, on different days
    materialize_all(env)
    silver = pl.read_delta(env.lake.uri(EVENTS))
    assert silver.height == 3 and silver["event_id"].n_unique() == 3
    first_rows = bronze(env).sort("received_at").unique("event_id", keep="first")
    expected = dict(first_rows.select("event_id", "timestamp").iter_rows())
    assert dict(silver.select("event_id", "timestamp").iter_rows()) == expected
    assert set(silver["source"]) == {"local"} and set(silver["user_id"]) == {"u0", "u1", "u2"}


def test_sources_file_is_not_world_readable(api: ApiServer, env: Env) -> None:
    for name in ("sources.json", "local_write_key"):
        assert (Path(env.data_dir) / name).stat().st_mode & 0o077 == 0


# Regressions from the hostile-input trial.


def test_huge_integer_timestamp_is_rejected_by_index_and_the_batch_commits(api: ApiServer, env: Env) -> None:
    body = b'[{"uuid": "ok", "timestamp": 0, "user": "u"}, {"uuid": "big", "timestamp": 1' + b"0" * 400 + b"}]"
    response = api.post("/v1/events", content=body)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["reason"] == "invalid_timestamp"
    assert bronze(env)["event_id"].to_list() == [event_id_for("ok", "page_view")]


def test_nul_inside_deep_nesting_rejects_that_event_only(api: ApiServer, env: Env) -> None:
    deep = b"[" * 477 + b'"\\u0000"' + b"]" * 477
    body = (
        b'[{"uuid": "ok", "timestamp": 0, "user": "u"}, {"uuid": "deep", "timestamp": 0, "events": {"x": '
        + deep
        + b"}}]"
    )
    response = api.post("/v1/events", content=body)
    assert response.status_code == 202
    assert [r["index"] for r in response.json()["rejected"]] == [1]  # deeper than bronze can store
    assert bronze(env)["event_id"].to_list() == [event_id_for("ok", "page_view")]


def test_multi_member_gzip_is_one_body_and_trailing_garbage_is_400(api: ApiServer, env: Env) -> None:
    first, second = b'[{"uuid": "g1", "timestamp": 0, "user": "u"},', b' {"uuid": "g2", "timestamp": 0, "user": "u"}]'
    response = api.post("/v1/events", content=gzip.compress(first) + gzip.compress(second))
    assert response.status_code == 202 and response.json()["accepted"] == 2
    response = api.post("/v1/events", content=gzip.compress(first + second) + b"junk")
    assert response.status_code == 400 and response.json()["error"] == "invalid_gzip"
    assert bronze(env).height == 2


def test_one_request_cannot_expand_past_the_event_limit(api: ApiServer, env: Env) -> None:
    payloads = [{"uuid": f"x{i}", "timestamp": 0, "events": {f"e{j}": 0 for j in range(100)}} for i in range(201)]
    response = api.post("/v1/events", json=payloads)
    assert response.status_code == 413
    assert response.json() == {"error": "too_many_events", "detail": {"limit": 20_000, "received": 20_100}}
    assert bronze(env).height == 0


def test_slow_body_is_408_and_a_key_in_the_query_string_is_never_logged(env: Env) -> None:
    api = start_api(env, {"EVENTLAKE_BODY_TIMEOUT_S": "1"})
    try:
        with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1]))) as sock:
            head = f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Write-Key: {api.key}\r\nContent-Length: 100\r\n\r\n"
            sock.sendall(head.encode() + b"[")  # promises 100 bytes, sends 1
            sock.settimeout(10)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408")
        httpx.post(f"{api.url}/v1/events?writeKey=leaked-{api.key}", json={"uuid": "q", "timestamp": 0})
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)
    assert "leaked-" not in api.log.read_text()


def test_readyz_reports_a_bronze_table_it_cannot_append_to(env: Env) -> None:
    old = pa.schema([("event_id", pa.string()), ("payload", pa.string())])  # a table from an older version
    DeltaTable.create(env.lake.uri(RAW_EVENTS), schema=old)
    api = start_api(env)
    try:
        readiness = httpx.get(f"{api.url}/readyz", timeout=30)
        assert readiness.status_code == 503 and "raw_events has columns" in readiness.json()["reason"]
        response = api.post("/v1/events", json={"uuid": "s", "timestamp": 0})
        assert response.status_code == 503
        assert response.json()["detail"] == "bronze commit failed; nothing acknowledged, retry"
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)
