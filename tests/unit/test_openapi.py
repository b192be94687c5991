"""The OpenAPI spec is generated from ``ingest_api.models`` and agrees with the contract's decoding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from ingest_api import models
from ingest_api.main import create_app
from warehouse.contract.errors import StructuralError
from warehouse.contract.native import MAX_EVENTS_PER_PAYLOAD, explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.contract.segment import MESSAGE_TYPES, message_row
from warehouse.settings import Settings

#: The body model of every ingest route in the spec.
BODIES: dict[str, Any] = {
    "/v1/events": models.NativeBody,
    "/v1/batch": models.SegmentBatch,
    **{f"/v1/{name}": models.segment_message(name) for name in MESSAGE_TYPES},
}
CTX = RequestContext(received_at=datetime(2024, 5, 1, 10, tzinfo=UTC), max_event_bytes=32_768)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return schema


def test_openapi_body_of_each_ingest_route_is_its_models_schema(spec: dict[str, Any]) -> None:
    posts = {path for path, operations in spec["paths"].items() if "post" in operations}
    assert posts == set(BODIES)  # a new route without a body model shows up here
    for path, model in BODIES.items():
        assert spec["paths"][path]["post"]["requestBody"] == models.request_body(model)["requestBody"], path
    # the schemas are pydantic's own, nested models inlined (no "#/$defs" left to dangle)
    native = body_schema(spec, "/v1/events")
    payload = TypeAdapter(models.NativePayload).json_schema()
    assert native["anyOf"] == [payload, {"type": "array", "items": payload}]
    assert (
        body_schema(spec, "/v1/batch")["properties"]["batch"]["items"] == TypeAdapter(models.BatchMessage).json_schema()
    )
    assert body_schema(spec, "/v1/track") == TypeAdapter(models.TrackMessage).json_schema()
    assert b"#/$defs" not in orjson.dumps(spec)


def test_openapi_answers_are_the_models(spec: dict[str, Any]) -> None:
    def models_named(path: str) -> dict[str, str]:
        answers = spec["paths"][path]["post"]["responses"]
        return {status: answer["content"]["application/json"]["schema"]["$ref"] for status, answer in answers.items()}

    errors = ("400", "401", "408", "413", "415", "429", "503")
    ref = "#/components/schemas/{}".format
    assert models_named("/v1/events") == {"202": ref("NativeAccepted"), **dict.fromkeys(errors, ref("NativeError"))}
    for path in set(BODIES) - {"/v1/events"}:
        assert models_named(path) == {"200": ref("SegmentAccepted"), **dict.fromkeys(errors, ref("SegmentError"))}
    for name in ("NativeAccepted", "SegmentAccepted", "NativeError", "SegmentError", "Rejection", "Readiness"):
        expected = TypeAdapter(getattr(models, name)).json_schema(ref_template="#/components/schemas/{model}")
        assert spec["components"]["schemas"][name] == {key: value for key, value in expected.items() if key != "$defs"}


def test_openapi_limits_are_the_contracts(spec: dict[str, Any]) -> None:
    events = body_schema(spec, "/v1/events")["anyOf"][0]["properties"]["events"]
    assert events["maxProperties"] == MAX_EVENTS_PER_PAYLOAD
    payload = {"uuid": "u", "timestamp": 0, "events": {f"e{i}": 1 for i in range(events["maxProperties"])}}
    assert len(explode_payload(payload, CTX)) == MAX_EVENTS_PER_PAYLOAD
    with pytest.raises(StructuralError, match=f"at most {MAX_EVENTS_PER_PAYLOAD} events"):
        explode_payload({**payload, "events": {**payload["events"], "one_more": 1}}, CTX)
    batch_type = body_schema(spec, "/v1/batch")["properties"]["batch"]["items"]["properties"]["type"]
    assert batch_type["enum"] == list(MESSAGE_TYPES)


def test_openapi_required_fields_are_what_the_contract_requires(spec: dict[str, Any]) -> None:
    native = body_schema(spec, "/v1/events")["anyOf"][0]
    minimal = {"uuid": "u", "timestamp": "2024-05-01T10:00:00Z"}
    assert native["required"] == list(minimal)
    explode_payload(minimal, CTX)
    for key in minimal:
        with pytest.raises(StructuralError):
            explode_payload({k: v for k, v in minimal.items() if k != key}, CTX)

    track = body_schema(spec, "/v1/track")
    message = {"messageId": "m1", "event": "Order Completed"}
    assert track["required"] == list(message)
    assert track["anyOf"] == [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    for user in ({"userId": "u1"}, {"anonymousId": "a1"}):
        message_row({**message, **user}, CTX, message_type="track")
        for key in message:
            with pytest.raises(StructuralError):
                message_row({k: v for k, v in {**message, **user}.items() if k != key}, CTX, message_type="track")
    with pytest.raises(StructuralError, match="userId or anonymousId"):
        message_row(message, CTX, message_type="track")

    item = body_schema(spec, "/v1/batch")["properties"]["batch"]["items"]
    assert item["required"] == ["messageId", "type"]
    message_row({"type": "page", "messageId": "m2", "userId": "u1"}, CTX)
    with pytest.raises(StructuralError, match="type must be one of"):
        message_row({"messageId": "m2", "userId": "u1"}, CTX)
