"""The PostHog capture format: lz64 decoding (against lz-string's own compressor), events to bronze
rows and back, identity and the event-type mapping."""

from __future__ import annotations

import array
import random
import string
import uuid
from datetime import UTC, datetime, timedelta

import lzstring
import orjson
import pytest

from ingest_api.lzstring import Lz64Error, Lz64TooLarge, decompress_from_base64
from warehouse.contract.errors import StructuralError
from warehouse.contract.formats import read_event_fields
from warehouse.contract.posthog import POSTHOG_FORMAT, event_row, token_of
from warehouse.contract.rows import EVENT_ID_NAMESPACE, RequestContext

RECEIVED = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
CTX = RequestContext(received_at=RECEIVED, user_agent="ua", ip="192.0.2.1", source="ph", source_format=POSTHOG_FORMAT)
UUID = "0190f1d2-7b3c-7def-8a12-3456789abcde"


def js_units(text: str) -> str:
    """``text`` as JavaScript holds it (UTF-16 code units, one character each), what lz-string compresses."""
    units = array.array("H")
    units.frombytes(text.encode("utf-16-le"))
    return "".join(map(chr, units))


def compress(text: str) -> str:
    return str(lzstring.LZString().compressToBase64(js_units(text)))


@pytest.mark.parametrize("length", [0, 1, 2, 7, 100, 3000])
def test_lz64_decodes_what_lz_string_compressed(length: int) -> None:
    rng = random.Random(length)
    for _ in range(10):
        text = "".join(rng.choice(string.printable + "éü漢😀") for _ in range(length))
        assert decompress_from_base64(compress(text), 10**9) == text


def test_lz64_is_refused_past_the_limit_and_when_broken() -> None:
    bomb = compress("A" * 1_000_000)
    assert len(bomb) < 3_000
    with pytest.raises(Lz64TooLarge):
        decompress_from_base64(bomb, 100_000)
    assert len(decompress_from_base64(bomb, 1_000_000)) == 1_000_000  # exactly at the limit: fine
    for broken in ["", "not base64!", bomb[:40]]:
        with pytest.raises(Lz64Error):
            decompress_from_base64(broken, 10**6)


def test_a_pageview_becomes_a_page_view_row_with_its_uuid_and_skew_corrected_time() -> None:
    event = {
        "event": "$pageview",
        "distinct_id": "u-1",
        "uuid": UUID.upper(),
        "timestamp": "2024-03-10T12:59:00Z",  # the client's clock is an hour fast
        "properties": {"$current_url": "https://shop.example/cart", "token": "secret", "$session_id": "s1"},
    }
    row = event_row(event, CTX, batch_sent_at="2024-03-10T13:00:00Z")
    assert row["event_id"] == UUID
    assert row["event_type"] == "page_view"
    assert row["timestamp"] == RECEIVED - timedelta(minutes=1)
    assert row["sent_at"] == datetime(2024, 3, 10, 13, 0, tzinfo=UTC)
    assert "secret" not in row["payload"]
    fields = read_event_fields(row["payload"], row["event_type"], POSTHOG_FORMAT)
    assert (fields.user_id, fields.anonymous_id, fields.session_id, fields.page_url) == (
        "u-1",
        None,
        "s1",
        "https://shop.example/cart",
    )


def test_offset_dates_an_event_without_timestamp_and_ids_are_stable_for_retries() -> None:
    event = {"event": "signed up", "distinct_id": 42, "offset": 1500, "uuid": "not-a-uuid"}
    row = event_row(event, CTX)
    assert row["timestamp"] == RECEIVED - timedelta(milliseconds=1500)
    assert row["event_type"] == "signed_up"
    assert row["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "posthog/not-a-uuid"))
    no_uuid = {"event": "x", "distinct_id": "d", "timestamp": 1710072000}
    assert event_row(no_uuid, CTX)["event_id"] == event_row(dict(no_uuid), CTX)["event_id"]
    assert event_row(no_uuid, CTX)["event_id"] != event_row({**no_uuid, "timestamp": 1710072001}, CTX)["event_id"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"distinct_id": "d"}, "event"),
        ({"event": "x"}, "distinct_id"),
        ({"event": "x", "distinct_id": "  "}, "distinct_id"),
        ({"event": "x", "distinct_id": "d", "properties": []}, "properties"),
        ({"event": "x", "distinct_id": "d", "offset": -5}, "offset"),
        ({"event": "x", "distinct_id": "d", "timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_events_that_cannot_be_stored_name_their_field(event: dict[str, object], field: str) -> None:
    with pytest.raises(StructuralError) as info:
        event_row(event, CTX)
    assert info.value.field == field


def fields_of(event: dict[str, object]) -> tuple[str, object]:
    row = event_row({"distinct_id": "d", **event}, CTX)
    return row["event_type"], read_event_fields(row["payload"], row["event_type"], POSTHOG_FORMAT)


def test_identify_links_the_anonymous_id_and_carries_the_person_properties() -> None:
    kind, fields = fields_of(
        {
            "event": "$identify",
            "distinct_id": "alice",
            "$set": {"plan": "pro"},
            "properties": {"$anon_distinct_id": "anon-1", "$set_once": {"first": "x", "plan": "free"}},
        }
    )
    assert kind == "identify"
    assert (fields.user_id, fields.anonymous_id) == ("alice", "anon-1")  # type: ignore[attr-defined]
    assert fields.properties == {"first": "x", "plan": "pro"}  # type: ignore[attr-defined]
    kind, fields = fields_of({"event": "$create_alias", "distinct_id": "alice", "properties": {"alias": "old-id"}})
    assert (kind, fields.properties) == ("alias", {"previousId": "old-id"})  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("properties", "user", "anonymous"),
    [
        ({}, "d", None),  # a server SDK: the distinct id is the user's
        ({"$device_id": "dev"}, "d", "dev"),  # identified on a device: linked
        ({"$device_id": "d"}, None, "d"),  # posthog-js before identify: the device id is the distinct id
        ({"$is_identified": False}, None, "d"),
        ({"$process_person_profile": False}, None, "d"),
    ],
)
def test_the_distinct_id_is_a_user_or_an_anonymous_id(
    properties: dict[str, object], user: object, anonymous: object
) -> None:
    _, fields = fields_of({"event": "$pageview", "properties": properties})
    assert (fields.user_id, fields.anonymous_id) == (user, anonymous)  # type: ignore[attr-defined]


def test_autocapture_and_exceptions_read_as_clicks_with_a_selector_and_errors_with_a_stack() -> None:
    kind, fields = fields_of(
        {
            "event": "$autocapture",
            "properties": {
                "$event_type": "click",
                "$elements_chain": 'button.btn.primary:attr__id="buy"attr_id="buy"nth-child="2"text="Buy now";div.card',
                "$lib": "web",
            },
        }
    )
    assert kind == "click"
    assert fields.properties == {"selector": "button#buy.btn.primary", "tag": "button", "text": "Buy now"}  # type: ignore[attr-defined]
    assert orjson.loads(fields.context) == {"$lib": "web", "library": {"name": "web", "version": None}}  # type: ignore[attr-defined]
    assert fields_of({"event": "$autocapture", "properties": {"$event_type": "submit"}})[0] == "submit"
    kind, fields = fields_of(
        {
            "event": "$exception",
            "properties": {
                "$exception_list": [
                    {
                        "type": "TypeError",
                        "value": "x is undefined",
                        "stacktrace": {
                            "frames": [
                                {"function": "main", "filename": "app.js", "lineno": 1, "colno": 2},
                                {"function": "render", "filename": "app.js", "lineno": 10, "colno": 5},
                            ]
                        },
                    }
                ]
            },
        }
    )
    assert kind == "error"
    assert fields.properties == {  # type: ignore[attr-defined]
        "type": "TypeError",
        "message": "x is undefined",
        "stackTrace": "TypeError: x is undefined\n    at render (app.js:10:5)\n    at main (app.js:1:2)",
    }


def test_the_token_is_found_where_each_sdk_puts_it() -> None:
    assert token_of({"api_key": "k1", "batch": []}) == "k1"
    assert token_of([{"event": "x", "properties": {"token": "k2"}}]) == "k2"
    assert token_of({"event": "x", "token": "k3"}) == "k3"
    assert token_of({"batch": [{"event": "x", "properties": {"token": "k4"}}]}) == "k4"
    assert token_of({"event": "x"}) is None


def test_breaker_findings_token_resend_ids_and_form_bodies() -> None:
    """Regressions from breaking the routes: the token of a later event counts and two tokens are
    refused; a resend with another sent_at keeps a uuid-less event's id; a form's plain JSON keeps
    its spaces and UTF-8; lz64 is bounded in UTF-8 bytes, not UTF-16 units."""
    assert token_of([{"event": "bad_first"}, {"event": "ok", "properties": {"token": "k"}}]) == "k"
    with pytest.raises(StructuralError, match="2 different project tokens"):
        token_of([{"event": "a", "properties": {"token": "k"}}, {"event": "b", "properties": {"token": "other"}}])
    event = {"event": "retry", "distinct_id": "u9", "timestamp": "2026-12-06T01:00:00Z"}
    first = event_row(event, CTX, batch_sent_at="2026-12-06T01:00:05Z")
    again = event_row(dict(event), CTX, batch_sent_at="2026-12-06T01:00:35Z")
    assert first["event_id"] == again["event_id"]
    assert event_row({**event, "offset": 5}, CTX)["event_id"] == event_row({**event, "offset": 9}, CTX)["event_id"]

    from ingest_api.api.routes.posthog import posthog_document
    from ingest_api.errors import ApiError

    form = "data=" + '{"event": "sign up", "distinct_id": "u", "properties": {"city": "São Paulo"}}'
    document = posthog_document(form.encode(), "", "application/x-www-form-urlencoded", 10_000)
    assert document["event"] == "sign up" and document["properties"]["city"] == "São Paulo"
    wide = compress(orjson.dumps([{"event": "x", "distinct_id": "u", "p": "中" * 4000}]).decode())
    with pytest.raises(ApiError) as info:  # 4,000 UTF-16 units, 12,000 UTF-8 bytes
        posthog_document(wide.encode(), "lz64", "text/plain", 10_000)
    assert info.value.status_code == 413
