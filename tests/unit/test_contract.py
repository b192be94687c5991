"""Native payload → bronze rows, event ids, timestamps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from warehouse.contract import (
    EVENT_ID_NAMESPACE,
    RequestContext,
    StructuralError,
    event_id_for,
    explode_payload,
    parse_client_timestamp,
    read_event_fields,
)

RECEIVED = datetime(2024, 3, 13, 10, 0, 0, 123456, tzinfo=UTC)
CTX = RequestContext(received_at=RECEIVED, user_agent="header-agent", ip="198.51.100.7")


def test_event_id_is_uuid5_of_uuid_and_type() -> None:
    assert event_id_for("abc", "click") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "abc/click"))
    assert event_id_for("abc", "click") != event_id_for("abc", "scroll")


def test_explode_one_row_per_event_key() -> None:
    payload = {
        "uuid": "p1",
        "timestamp": "2024-03-13T11:21:14+01:00",
        "app": "shop",
        "user": "u1",
        "events": {"click": {"target": "#buy"}, "scroll": 80},
    }
    rows = explode_payload(payload, CTX)
    assert [r["event_type"] for r in rows] == ["click", "scroll"]
    assert rows[0]["event_id"] == event_id_for("p1", "click")
    assert rows[0]["timestamp"] == datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)
    assert rows[0]["client_timestamp"] == "2024-03-13T11:21:14+01:00"
    assert rows[0]["received_date"] == RECEIVED.date()
    assert rows[0]["app"] == "shop"
    assert rows[0]["source_format"] == "native"
    # each row's payload keeps the original object with `events` narrowed to that event
    assert orjson.loads(rows[1]["payload"]) == {**payload, "events": {"scroll": 80}}


def test_explode_without_events_is_one_page_view_with_defaults() -> None:
    rows = explode_payload({"uuid": "p2", "timestamp": 1710325274000}, CTX)
    assert len(rows) == 1
    assert rows[0]["event_type"] == "page_view"
    assert rows[0]["app"] == "default"
    assert rows[0]["user_agent"] == "header-agent"
    assert rows[0]["ip"] == "198.51.100.7"
    assert rows[0]["timestamp"] == datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)
    assert rows[0]["client_timestamp"] == "1710325274000"
    assert explode_payload({"uuid": "p2", "timestamp": 0, "events": {}}, CTX)[0]["event_type"] == "page_view"


def test_payload_user_agent_and_ip_win_over_request() -> None:
    rows = explode_payload({"uuid": "p", "timestamp": 0, "userAgent": "ua", "ip": "203.0.113.1"}, CTX)
    assert (rows[0]["user_agent"], rows[0]["ip"]) == ("ua", "203.0.113.1")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([1, 2], None),
        ("text", None),
        ({"timestamp": 0}, "uuid"),
        ({"uuid": "", "timestamp": 0}, "uuid"),
        ({"uuid": 7, "timestamp": 0}, "uuid"),
        ({"uuid": "x"}, "timestamp"),
        ({"uuid": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"uuid": "x", "timestamp": True}, "timestamp"),
        ({"uuid": "x", "timestamp": -5}, "timestamp"),
        ({"uuid": "x", "timestamp": 0, "events": ["click"]}, "events"),
        ({"uuid": "x", "timestamp": 0, "app": 3}, "app"),
        # regressions from hostile input: offset pushes year 9999/1 out of range (was a 500);
        # fromisoformat ignored everything after a NUL
        ({"uuid": "x", "timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp"),
        ({"uuid": "x", "timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
        ({"uuid": "x", "timestamp": "2024-05-01T10:00:00Z\u0000garbage"}, "timestamp"),
        ({"uuid": "x", "timestamp": 0, "events": {str(i): 0 for i in range(101)}}, "events"),
    ],
)
def test_structural_errors_name_the_field(payload: object, field: str | None) -> None:
    with pytest.raises(StructuralError) as info:
        explode_payload(payload, CTX)
    assert info.value.field == field


def test_naive_timestamp_is_read_as_utc() -> None:
    assert parse_client_timestamp("2019-11-01 17:59:13.273932") == datetime(2019, 11, 1, 17, 59, 13, 273932, tzinfo=UTC)


def test_read_event_fields_wraps_scalars_and_keeps_types() -> None:
    payload = {
        "uuid": "p",
        "timestamp": 0,
        "user": 42,
        "session": "s",
        "page": "https://a/b",
        "location": {"city": "Berlin"},
        "events": {"scroll": 80},
    }
    row = explode_payload(payload, CTX)[0]
    fields = read_event_fields(row["payload"], "scroll")
    assert fields.properties == {"value": 80}
    assert fields.user_id == "42"
    assert fields.session_id == "s"
    assert fields.page_url == "https://a/b"
    assert fields.location == '{"city":"Berlin"}'


def test_payload_nested_deeper_than_storable_is_rejected() -> None:
    # Regression: 255-1023 levels parsed but failed to serialize, a 500 for the whole request.
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(StructuralError, match="cannot be stored"):
        explode_payload({"uuid": "x", "timestamp": 0, "events": {"click": deep}}, CTX)


def test_expansion_over_the_byte_budget_is_rejected_before_rows_are_built() -> None:
    # Regression: a long field repeated into each of many event rows exhausted the worker's memory.
    payload = {"uuid": "x", "timestamp": 0, "page": "A" * 10_000, "events": {str(i): 0 for i in range(100)}}
    with pytest.raises(StructuralError, match="expands to"):
        explode_payload(payload, CTX, max_bytes=500_000)
    assert len(explode_payload(payload, CTX, max_bytes=2_000_000)) == 100
