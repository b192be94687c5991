"""Snowplow's tracker protocol against the real API under uvicorn: the unmodified snowplow-tracker
Python package (key in the endpoint's path, or in a header), the pixel with its allow-list, and
refusals with statuses the trackers do not retry."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable

import httpx
import orjson
import polars as pl
import pytest
import requests
from snowplow_tracker import (
    Emitter,
    PagePing,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)

from tests.conftest import ApiServer, Env, materialize_all, start_api
from warehouse.contract.snowplow import PIXEL_PATH
from warehouse.lake.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration

LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
CART = "iglu:com.acme/cart_opened/jsonschema/1-0-0"


def silver(env: Env) -> pl.DataFrame:
    frame = pl.from_arrow(env.lake.dataset(EVENTS).to_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def bronze_rows(env: Env) -> int:
    return 0 if env.lake.version(RAW_EVENTS) is None else env.lake.dataset(RAW_EVENTS).count_rows()


def track_all(tracker: Tracker) -> None:
    page = "https://shop.example/cart"
    tracker.track(PageView(page_url=page, page_title="Cart"))
    tracker.track(PagePing(page_url=page, min_x=0, max_x=0, min_y=0, max_y=600))
    tracker.track(StructuredEvent(category="shop", action="add-to-basket", label="sku-1", value=2))
    tracker.track(
        SelfDescribing(SelfDescribingJson(LINK_CLICK, {"targetUrl": "https://shop.example/pay", "elementId": "pay"}))
    )
    tracker.track(
        SelfDescribing(SelfDescribingJson(CART, {"items": 3}), context=[SelfDescribingJson(CART, {"items": 1})])
    )
    tracker.flush()


@pytest.mark.parametrize("key_in", ["path", "header"])
def test_the_snowplow_python_tracker_unchanged_lands_once_per_event_with_its_user(
    api: ApiServer, env: Env, key_in: str
) -> None:
    failures: list[object] = []
    session = requests.Session()
    endpoint = f"{api.url}/{api.key}" if key_in == "path" else api.url
    if key_in == "header":
        session.headers["X-Write-Key"] = api.key
    emitter = Emitter(
        endpoint, protocol="http", batch_size=10, on_failure=lambda n, events: failures.append(n), session=session
    )
    subject = Subject().set_user_id("u-1").set_domain_user_id("duid-1").set_domain_session_id("sid-1")
    tracker = Tracker("sp", emitter, subject=subject, app_id="shop", encode_base64=True)
    track_all(tracker)
    assert failures == []
    materialize_all(env)
    rows = silver(env).sort("event_type")
    assert rows["event_type"].to_list() == ["add_to_basket", "cart_opened", "click", "page_view", "scroll"]
    assert (
        set(rows["user_id"]) == {"u-1"}
        and set(rows["anonymous_id"]) == {"duid-1"}
        and set(rows["session_id"]) == {"sid-1"}
    )
    assert set(rows["app"]) == {"shop"} and set(rows["source_format"]) == {"snowplow"}
    properties = {row["event_type"]: orjson.loads(row["properties"]) for row in rows.iter_rows(named=True)}
    assert properties["add_to_basket"] == {
        "category": "shop",
        "action": "add-to-basket",
        "label": "sku-1",
        "value": "2",
    }
    assert properties["click"]["selector"] == "a#pay" and properties["click"]["schema"] == LINK_CLICK
    assert properties["cart_opened"] == {"items": 3, "schema": CART}
    assert properties["scroll"]["maxY"] == 600
    context = orjson.loads(rows.filter(pl.col("event_type") == "cart_opened")["context"][0])
    assert context["contexts"] == [{"schema": CART, "data": {"items": 1}}]
    assert context["library"]["name"] == "snowplow-python"
    # A tracker's resend (the same eid) is still one row.
    events = silver(env)["event_id"].to_list()
    assert len(events) == len(set(events)) == 5


def test_the_pixel_answers_a_gif_and_takes_only_allowed_apps_without_a_key(
    env: Env, setting: Callable[[str, str], None]
) -> None:
    setting("EVENTLAKE_SNOWPLOW_PIXEL_APPS", orjson.dumps({"shop": "local"}).decode())
    setting("EVENTLAKE_SNOWPLOW_PIXEL_RATE_LIMIT", "3/minute")
    server = start_api(env)
    try:
        url = f"{server.url}{PIXEL_PATH}"
        page = {"e": "pv", "url": "https://shop.example/", "aid": "shop", "duid": "d-1", "tv": "js-4.1.0"}
        answer = httpx.get(url, params={**page, "eid": str(uuid.uuid4())})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
        assert answer.content.startswith(b"GIF89a")
        assert httpx.get(url, params={**page, "eid": str(uuid.uuid4()), "aid": "other"}).status_code == 403
        keyed = httpx.get(  # with a NUL in its user agent: repaired, as in bodies
            f"{server.url}/{server.key}{PIXEL_PATH}",
            params={**page, "eid": str(uuid.uuid4()), "aid": "x", "ua": "a\x00b"},
        )
        assert keyed.status_code == 200  # with its key, any app id
        assert httpx.get(url, params={**page, "eid": "e", "pad": "x" * 9000}).status_code == 400  # query too large
        statuses = [httpx.get(url, params={**page, "eid": str(uuid.uuid4())}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # 3 a minute from one IP, the first one counted
        assert "a\ufffdb" in pl.read_delta(env.lake.uri(RAW_EVENTS))["user_agent"].to_list()
        materialize_all(env)
        rows = silver(env)
        assert rows.height == 4 and set(rows["source"]) == {"local"}
        assert rows.filter(pl.col("app") == "shop")["platform"].unique().to_list() == ["web"]
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)


def test_snowplow_refusals_use_statuses_trackers_do_not_retry(api: ApiServer, env: Env) -> None:
    tp2 = f"{api.url}/{api.key}/com.snowplowanalytics.snowplow/tp2"
    good = {"e": "pv", "eid": str(uuid.uuid4()), "url": "https://shop.example/"}
    schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
    cases = [
        (f"{api.url}/elk_wrong/com.snowplowanalytics.snowplow/tp2", {"schema": schema, "data": [good]}, 401),
        (f"{api.url}/com.snowplowanalytics.snowplow/tp2", {"schema": schema, "data": [good]}, 401),
        (tp2, {"schema": schema}, 400),
        (tp2, {"schema": schema, "data": [{"e": "pv"}]}, 400),  # no eid: every event refused
        (tp2, {"schema": schema, "data": [{**good, "ue_px": "%%%"}]}, 400),
        (tp2, {"schema": schema, "data": [{**good, "pad": "x" * 600_000}]}, 422),  # over max_body_bytes: not 413
    ]
    for url, body, status in cases:
        response = httpx.post(url, content=orjson.dumps(body))
        assert response.status_code == status, (
            body.get("data", [{}])[0].keys() if body.get("data") else body,
            response.text,
        )
    assert bronze_rows(env) == 0
    # ue_px / cx (base64url, unpadded) are decoded at the edge: bronze holds their JSON.
    payload = {"schema": LINK_CLICK, "data": {"targetUrl": "https://x.example"}}
    ue_px = (
        base64.urlsafe_b64encode(orjson.dumps({"schema": "iglu:x/unstruct_event/jsonschema/1-0-0", "data": payload}))
        .decode()
        .rstrip("=")
    )
    response = httpx.post(tp2, content=orjson.dumps({"schema": schema, "data": [{**good, "e": "ue", "ue_px": ue_px}]}))
    assert response.status_code == 200 and response.json()["accepted"] == 1
    stored = orjson.loads(pl.read_delta(env.lake.uri(RAW_EVENTS))["payload"][0])
    assert "ue_px" not in stored and stored["ue_pr"]["data"] == payload
    log = api.log.read_text()
    assert api.key not in log and "elk_wrong" not in log  # a key in the path is never logged


def test_credentialed_cross_origin_requests_are_answered_with_the_origin(api: ApiServer) -> None:
    """The JavaScript tracker posts with credentials: a wildcard origin would make the browser drop the answer."""
    origin = "https://shop.example"
    preflight = httpx.options(
        f"{api.url}/com.snowplowanalytics.snowplow/tp2",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    answer = httpx.get(f"{api.url}/healthz", headers={"Origin": origin, "Cookie": "sp=1"})
    assert answer.headers["access-control-allow-origin"] == origin
