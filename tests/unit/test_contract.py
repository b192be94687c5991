"""Native payload → bronze rows, event ids, timestamps."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from warehouse.contract.errors import StructuralError
from warehouse.contract.formats import read_event_fields
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import EVENT_ID_NAMESPACE, RequestContext, bronze_table, event_id_for, name_id, utf8_len
from warehouse.contract.time import parse_client_timestamp, resolve_event_time
from warehouse.lake.tables import RAW_EVENTS

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
    assert rows[0]["original_timestamp"] == "2024-03-13T11:21:14+01:00"
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
    assert rows[0]["original_timestamp"] == "1710325274000"
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


def test_naive_timestamp_is_read_as_utc_and_flagged() -> None:
    expected = datetime(2019, 11, 1, 17, 59, 13, 273932, tzinfo=UTC)
    assert parse_client_timestamp("2019-11-01 17:59:13.273932") == (expected, True)
    assert parse_client_timestamp("2019-11-01T18:59:13.273932+01:00") == (expected, False)
    rows = explode_payload({"uuid": "n", "timestamp": "2019-11-01 17:59:13"}, CTX)
    assert rows[0]["timestamp_naive"] is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1710325274, datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),  # epoch seconds
        (1710325274.5, datetime(2024, 3, 13, 10, 21, 14, 500000, tzinfo=UTC)),
        (1710325274000, datetime(2024, 3, 13, 10, 21, 14, tzinfo=UTC)),  # epoch milliseconds
        (99_999_999_999, datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # the last value read as seconds
        (100_000_000_000, datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # the first read as milliseconds
        ("1710072000.5", datetime(2024, 3, 10, 12, 0, 0, 500000, tzinfo=UTC)),  # epoch seconds as text
        (" 1710072000 ", datetime(2024, 3, 10, 12, 0, tzinfo=UTC)),
        ("1710072000500", datetime(2024, 3, 10, 12, 0, 0, 500000, tzinfo=UTC)),  # epoch ms as text (Snowplow's dtm)
        ("1710072000500.25", datetime(2024, 3, 10, 12, 0, 0, 500250, tzinfo=UTC)),
        ("99999999999", datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # the same magnitude rule as numbers
        ("2024-03-13T10:21:14.123456-05:30", datetime(2024, 3, 13, 15, 51, 14, 123456, tzinfo=UTC)),
    ],
)
def test_epoch_seconds_and_milliseconds_are_told_apart_by_magnitude(value: object, expected: datetime) -> None:
    if expected.year >= 2100:
        with pytest.raises(StructuralError, match="outside"):
            parse_client_timestamp(value)
    else:
        assert parse_client_timestamp(value)[0] == expected


@pytest.mark.parametrize(
    "value",
    ["1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0200-01-01T00:00:00Z", -1, "-1", "1e12", "17100720 00", "0x65ed"],
)
def test_absurd_years_and_malformed_epoch_texts_are_rejected(value: object) -> None:
    with pytest.raises(StructuralError) as info:
        parse_client_timestamp(value)
    assert info.value.reason == "invalid_timestamp"


def test_sent_at_corrects_client_clock_skew() -> None:
    # The client clock is 1 h fast: it stamped the event 10:00 and sent it at 10:05 by its clock,
    # and the server received it at 09:05:00.5 real time. Corrected = received - (sent - ts).
    received = datetime(2024, 3, 13, 9, 5, 0, 500000, tzinfo=UTC)
    time = resolve_event_time("2024-03-13T10:00:00Z", "2024-03-13T10:05:00Z", received)
    assert time.timestamp == datetime(2024, 3, 13, 9, 0, 0, 500000, tzinfo=UTC)
    assert time.original == "2024-03-13T10:00:00Z"
    assert time.sent_at == datetime(2024, 3, 13, 10, 5, tzinfo=UTC)
    assert not time.in_future
    # without sentAt, a clock two days fast stays two days ahead and is flagged
    ahead = resolve_event_time("2024-03-15T09:05:00Z", None, received)
    assert ahead.timestamp == datetime(2024, 3, 15, 9, 5, tzinfo=UTC) and ahead.in_future
    # sentAt removes the same skew, so the event is no longer in the future
    fixed = resolve_event_time("2024-03-15T09:05:00Z", "2024-03-15T09:05:01Z", received)
    assert fixed.timestamp == datetime(2024, 3, 13, 9, 4, 59, 500000, tzinfo=UTC) and not fixed.in_future
    with pytest.raises(StructuralError) as info:
        resolve_event_time("2024-03-13T10:00:00Z", "soon", received)
    assert info.value.field == "sentAt"


def test_native_rows_keep_original_timestamp_sent_at_and_drop_the_write_key() -> None:
    payload = {"uuid": "s", "timestamp": "2024-03-13T10:00:00Z", "sentAt": "2024-03-13T10:00:02Z", "writeKey": "k"}
    row = explode_payload(payload, CTX)[0]
    assert row["timestamp"] == RECEIVED - timedelta(seconds=2)
    assert row["sent_at"] == datetime(2024, 3, 13, 10, 0, 2, tzinfo=UTC)
    assert row["original_timestamp"] == "2024-03-13T10:00:00Z"
    assert "writeKey" not in orjson.loads(row["payload"])
    assert row["source"] == "default"


def test_event_over_the_size_limit_is_rejected_naming_the_limit() -> None:
    ctx = RequestContext(received_at=RECEIVED, max_event_bytes=1024)
    small = {"uuid": "a", "timestamp": 0, "events": {"click": {"x": "y" * 900}}}
    assert len(explode_payload(small, ctx)) == 1
    with pytest.raises(StructuralError, match="1024-byte limit") as info:
        explode_payload({**small, "events": {"click": {"x": "y" * 1024}}}, ctx)
    assert info.value.reason == "event_too_large"


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


def test_event_size_counts_utf8_bytes_not_characters() -> None:
    ctx = RequestContext(received_at=RECEIVED, max_event_bytes=1024)
    assert len(explode_payload({"uuid": "a", "timestamp": 0, "events": {"x": "€" * 300}}, ctx)) == 1
    with pytest.raises(StructuralError, match="1024-byte limit"):  # 400 characters, 1,200+ bytes
        explode_payload({"uuid": "a", "timestamp": 0, "events": {"x": "€" * 400}}, ctx)


@pytest.mark.parametrize("name", ["", "a/click", "p-1/page_view", "segment/ü€𝄞", "x" * 1000, "posthog/\u00e9\t\n"])
def test_name_ids_are_the_standard_uuid5_in_the_event_namespace(name: str) -> None:
    # The hand-rolled uuid5 (3x faster, once per ingested event) must never change an id.
    assert name_id(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def test_name_ids_match_uuid5_over_many_random_names() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        name = "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF)])) for _ in range(20))
        assert name_id(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def test_the_bronze_table_holds_every_row_in_the_bronze_schema() -> None:
    ctx = RequestContext(received_at=datetime(2024, 5, 1, 10, tzinfo=UTC), user_agent="ua", ip="192.0.2.1")
    rows = [
        *explode_payload({"uuid": "a", "timestamp": 1714557600000, "events": {"click": {}, "scroll": 80}}, ctx),
        *explode_payload({"uuid": "b", "timestamp": "2024-05-01T10:00:00", "sentAt": "2024-05-01T10:00:01Z"}, ctx),
        *explode_payload({"uuid": "c", "timestamp": 1714557600, "userAgent": None, "ip": "203.0.113.9"}, ctx),
    ]
    table = bronze_table(rows)
    assert table.schema.equals(RAW_EVENTS.schema)
    assert table.num_rows == 4 and table.column("sent_at").null_count == 3
    assert table.column("event_type").to_pylist() == ["click", "scroll", "page_view", "page_view"]
    assert table.column("timestamp").to_pylist()[0] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert table.column("ip").to_pylist() == ["192.0.2.1", "192.0.2.1", "192.0.2.1", "203.0.113.9"]


def test_an_event_alone_over_its_size_limit_is_event_too_large_before_the_expansion_check() -> None:
    # Regression: with a small expansion budget, a single oversized page view was rejected as
    # expansion_too_large (202 with a rejection) instead of event_too_large (413).
    ctx = RequestContext(received_at=datetime(2024, 5, 1, tzinfo=UTC), max_event_bytes=1_000)
    with pytest.raises(StructuralError) as raised:
        explode_payload({"uuid": "a", "timestamp": 1714557600, "page": "x" * 6_000}, ctx, max_bytes=5_000)
    assert raised.value.reason == "event_too_large"


@pytest.mark.parametrize("events", [None, {"click": {"v": "😀" * 300}, "scroll": {"v": "😀" * 300}}])
def test_the_expansion_budget_counts_utf8_bytes_not_characters(events: dict[str, object] | None) -> None:
    # Regression: the budget counted characters: 500 emoji (2,000 bytes) passed a 2,000-byte budget.
    payload: dict[str, object] = {"uuid": "a", "timestamp": 1714557600, "page": "😀" * 500}
    if events:
        payload["events"] = events
    ctx = RequestContext(received_at=datetime(2024, 5, 1, tzinfo=UTC))
    with pytest.raises(StructuralError) as raised:
        explode_payload(payload, ctx, max_bytes=2_000)
    assert raised.value.reason == "expansion_too_large"
    assert utf8_len("é😀a") == len("é😀a".encode()) == 7


def test_a_sent_at_before_the_event_corrects_to_the_receive_time_not_after_it() -> None:
    # Regression (new-user trial): snowplow-tracker sends stm in whole seconds and dtm in ms, so
    # stm < dtm by up to 1 s, and the correction put events up to 1 s after they were received.
    received = datetime(2026, 12, 6, 4, 7, 45, 980000, tzinfo=UTC)
    time = resolve_event_time("1765001265970", "1765001265000", received)
    assert time.timestamp == received
    later = resolve_event_time("1765001265000", "1765001266000", received)  # sent 1 s after: 1 s earlier
    assert later.timestamp == received - timedelta(seconds=1)
