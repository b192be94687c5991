"""PostHog's capture protocol against the real API under uvicorn: the unmodified posthog Python SDK,
and posthog-js's wire forms (lz64 and base64 form bodies, gzip-js, arrays with the token inside)."""

from __future__ import annotations

import base64
import gzip
import time
import urllib.parse
import uuid
from datetime import UTC, datetime

import httpx
import lzstring
import orjson
import polars as pl
import pytest
from posthog import Posthog

from tests.conftest import ApiServer, Env, materialize_all
from warehouse.lake.tables import EVENTS, RAW_EVENTS

pytestmark = pytest.mark.integration


def bronze(env: Env) -> pl.DataFrame:
    if env.lake.version(RAW_EVENTS) is None:
        return pl.DataFrame(schema={"event_id": pl.String, "event_type": pl.String})
    return pl.read_delta(env.lake.uri(RAW_EVENTS))


def silver(env: Env) -> pl.DataFrame:
    frame = pl.from_arrow(env.lake.dataset(EVENTS).to_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def js_event(token: str, name: str, distinct_id: str, **properties: object) -> dict[str, object]:
    """An event as posthog-js batches it: token and distinct id inside ``properties``, ``offset`` in ms."""
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "properties": {"token": token, "distinct_id": distinct_id, "$device_id": "dev-1", **properties},
        "offset": 250,
    }


@pytest.mark.parametrize("compress", [False, True])
def test_the_posthog_python_sdk_unchanged_lands_once_per_event_with_its_user(
    api: ApiServer, env: Env, compress: bool
) -> None:
    errors: list[Exception] = []
    client = Posthog(
        api.key, host=api.url, sync_mode=True, gzip=compress, max_retries=0, on_error=lambda e, _b: errors.append(e)
    )
    when = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    ids = [
        client.capture(
            "$pageview", distinct_id="u-1", properties={"$current_url": "https://shop.example/"}, timestamp=when
        ),
        client.capture("Order Completed", distinct_id="u-1", properties={"total": 12.5}, timestamp=when),
        client.set(distinct_id="u-1", properties={"plan": "pro"}),
        client.alias(previous_id="u-1", distinct_id="anon-7"),  # posthog-python: anon-7 becomes an alias of u-1
    ]
    client.flush()
    assert errors == [] and all(ids)
    # The SDK retries with the same uuid: a resent event is still one row in silver.
    retried = client.capture(
        "Order Completed", distinct_id="u-1", properties={"total": 12.5}, timestamp=when, uuid=ids[1]
    )
    client.flush()
    assert retried == ids[1] and errors == []

    rows = bronze(env)
    assert set(rows["source_format"]) == {"posthog"} and set(rows["source"]) == {"local"}
    assert sorted(rows["event_id"].unique().to_list()) == sorted(str(uuid.UUID(i)) for i in ids)  # type: ignore[arg-type]
    assert api.key not in "".join(rows["payload"].to_list())
    materialize_all(env)
    rows = silver(env).sort("event_type")
    assert rows["event_type"].to_list() == ["alias", "identify", "order_completed", "page_view"]
    assert set(rows["user_id"]) == {"u-1"}
    assert rows.filter(pl.col("event_type") == "page_view")["page_url"].to_list() == ["https://shop.example/"]
    alias = orjson.loads(rows.filter(pl.col("event_type") == "alias")["properties"][0])
    assert alias == {"previousId": "anon-7"}


def lz64(value: object) -> str:
    return str(lzstring.LZString().compressToBase64(orjson.dumps(value).decode()))


def test_posthog_js_wire_forms_all_land(api: ApiServer, env: Env) -> None:
    """posthog-js's encodings (lz64 and base64 form bodies, lz64 text, gzip-js without a header, a
    plain JSON array) on each capture path, with and without the trailing slash."""
    forms = {
        "lz64 form": lambda events: {
            "content": "data=" + urllib.parse.quote(lz64(events), safe="") + "&compression=lz64",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        "lz64 text": lambda events: {"content": lz64(events), "params": {"compression": "lz64"}},
        "base64 form": lambda events: {
            "content": "data=" + urllib.parse.quote(base64.b64encode(orjson.dumps(events)).decode(), safe=""),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        "gzip-js": lambda events: {
            "content": gzip.compress(orjson.dumps(events)),
            "params": {"compression": "gzip-js"},
            "headers": {"Content-Type": "text/plain"},
        },
        "json": lambda events: {"content": orjson.dumps(events), "headers": {"Content-Type": "application/json"}},
    }
    paths = ["/e/", "/i/v0/e", "/batch/", "/capture", "/track/"]
    sent: list[str] = []
    for (name, form), path in zip(forms.items(), paths, strict=True):
        events = [
            js_event(
                api.key, "$pageview", "dev-1", **{"$current_url": f"https://shop.example/{name.replace(' ', '-')}"}
            )
        ]
        events.append(
            js_event(api.key, "$autocapture", "dev-1", **{"$event_type": "click", "$elements_chain": "a.buy"})
        )
        response = httpx.post(f"{api.url}{path}", **form(events))
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == 1 and response.json()["accepted"] == 2
        sent += [str(event["uuid"]) for event in events]
    materialize_all(env)
    rows = silver(env)
    assert sorted(rows["event_id"].to_list()) == sorted(sent)
    assert rows["anonymous_id"].unique().to_list() == ["dev-1"] and rows["user_id"].null_count() == rows.height
    clicks = rows.filter(pl.col("event_type") == "click")["properties"].to_list()
    assert {orjson.loads(p)["selector"] for p in clicks} == {"a.buy"}


def test_posthog_refusals_are_clear_and_store_nothing(api: ApiServer, env: Env) -> None:
    event = js_event(api.key, "$pageview", "d")
    unsigned = {**event, "properties": {"distinct_id": "d"}}
    cases = [
        ({"content": orjson.dumps([unsigned])}, 401, "missing_write_key"),
        ({"content": orjson.dumps({"api_key": "wrong", "batch": [unsigned]})}, 401, "invalid_write_key"),
        (
            {
                "content": "data=%21%21%21&compression=lz64",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
            "invalid_lz64",
        ),
        ({"content": lz64([event])[:-12], "params": {"compression": "lz64"}}, 400, "invalid_lz64"),
        ({"content": "not json, not base64 !"}, 400, "invalid_body"),
        ({"content": orjson.dumps({"api_key": api.key, "batch": [{"event": "x"}]})}, 400, "invalid_batch"),
    ]
    for request, status, error in cases:
        response = httpx.post(f"{api.url}/e/", **request)  # type: ignore[arg-type]
        assert (response.status_code, response.json()["error"]) == (status, error), response.text
    # `curl -d '{…}'` labels JSON as a form body: it is read as JSON.
    as_curl = httpx.post(
        f"{api.url}/e/",
        content=orjson.dumps({"api_key": api.key, "batch": [event]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert as_curl.status_code == 200 and as_curl.json()["accepted"] == 1
    # A decompression bomb: a few kilobytes of lz64 that would inflate past max_body_bytes.
    bomb = [{**event, "properties": {**event["properties"], "pad": "A" * 600_000}}]  # type: ignore[dict-item]
    response = httpx.post(f"{api.url}/batch/", content=lz64(bomb), params={"compression": "lz64"})
    assert (response.status_code, response.json()["error"]) == (413, "payload_too_large")
    assert bronze(env).height == 1  # the curl-style event only


def test_decide_and_flags_answer_an_empty_configuration(api: ApiServer) -> None:
    body = base64.b64encode(orjson.dumps({"token": api.key, "distinct_id": "d"})).decode()
    for path in ("/decide/?v=3", "/flags/?v=2", "/flags"):
        response = httpx.post(
            f"{api.url}{path}",
            content="data=" + urllib.parse.quote(body, safe=""),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["featureFlags"] == {} and response.json()["sessionRecording"] is False
    assert httpx.post(f"{api.url}/flags/?v=2", json={"token": "wrong", "distinct_id": "d"}).status_code == 401


def test_the_remote_configuration_posthog_js_loads_at_start_up(api: ApiServer) -> None:
    # posthog-js 1.449 first loads /array/<token>/config.js as a script, then asks /array/<token>/config.
    answer = httpx.get(f"{api.url}/array/{api.key}/config")
    assert answer.status_code == 200 and answer.json()["flags"] == {} and answer.json()["sessionRecording"] is False
    script = httpx.get(f"{api.url}/array/{api.key}/config.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("application/javascript")
    assignment = script.text.split("window._POSTHOG_REMOTE_CONFIG || {}, ", 1)[1].rsplit(");", 1)[0]
    assert orjson.loads(assignment)[api.key]["config"]["flags"] == {}
    for path in ("/array/phc_unknown/config", "/array/phc_unknown/config.js"):
        refused = httpx.get(f"{api.url}{path}")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_write_key"


def test_the_remote_configuration_answers_the_path_token_only_and_records_its_source(api: ApiServer) -> None:
    # Regression (breaking the new code): a valid X-Write-Key made any path token answered (and echoed
    # into the script); a garbled Basic header refused a valid path token; the answers counted as "unknown".
    header = {"X-Write-Key": api.key}
    assert httpx.get(f"{api.url}/array/phc_other/config.js", headers=header).status_code == 401
    garbled = {"Authorization": "Basic !!!"}
    assert httpx.get(f"{api.url}/array/{api.key}/config", headers=garbled).status_code == 200
    # The API logs a request once its answer is sent: the line may come a moment after the response.
    deadline = time.monotonic() + 10
    while True:
        logged = [orjson.loads(line) for line in api.log.read_text().splitlines() if line.startswith("{")]
        answered = [line for line in logged if line.get("route") == "/array/{token}/config"]
        if answered or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(line["status"], line["source"], line["format"]) for line in answered] == [(200, "local", "posthog")]
