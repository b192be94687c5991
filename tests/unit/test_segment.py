"""Segment messages → bronze rows → silver fields; the repair of bad characters; write keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ingest_api.decoding import parse_document
from ingest_api.errors import ApiError
from warehouse.contract.errors import StructuralError
from warehouse.contract.formats import read_event_fields
from warehouse.contract.rows import EVENT_ID_NAMESPACE, RequestContext
from warehouse.contract.segment import event_name, message_row, segment_event_id
from warehouse.settings import Settings
from warehouse.sources import SourceRegistry, add_source, ensure_local_source, hash_key, read_sources_file

RECEIVED = datetime(2024, 3, 13, 10, 0, 0, tzinfo=UTC)
CTX = RequestContext(
    received_at=RECEIVED, user_agent="header-ua", ip="198.51.100.7", source="web", source_format="segment"
)

TRACK = {
    "type": "track",
    "messageId": "6f1c1c3a-1f5e-4a8e-9d4e-2d5c1b0e7a11",
    "userId": "u-1",
    "anonymousId": "anon-1",
    "event": "Order Completed",
    "properties": {"total": 12.5, "currency": "EUR"},
    "timestamp": "2024-03-13T09:59:58Z",
    "context": {
        "page": {"url": "https://shop.example/checkout", "referrer": "https://shop.example/cart"},
        "userAgent": "Mozilla/5.0 (iPhone)",
        "ip": "203.0.113.5",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "app": {"name": "shop-ios", "version": "3.1"},
        "os": {"name": "iOS", "version": "17.2"},
        "device": {"type": "ios"},
    },
    "writeKey": "secret",
}


def test_track_message_maps_to_one_bronze_row() -> None:
    row = message_row(TRACK, CTX, batch_sent_at="2024-03-13T09:59:59Z")
    assert row["event_id"] == "6f1c1c3a-1f5e-4a8e-9d4e-2d5c1b0e7a11"
    assert row["event_type"] == "order_completed"
    assert row["app"] == "shop-ios"
    assert (row["source"], row["source_format"]) == ("web", "segment")
    assert (row["user_agent"], row["ip"]) == ("Mozilla/5.0 (iPhone)", "203.0.113.5")
    # batch sentAt corrects the skew: received 10:00:00 - (09:59:59 - 09:59:58) = 09:59:59
    assert row["timestamp"] == datetime(2024, 3, 13, 9, 59, 59, tzinfo=UTC)
    assert row["original_timestamp"] == "2024-03-13T09:59:58Z"
    stored = orjson.loads(row["payload"])
    assert "writeKey" not in stored and stored["sentAt"] == "2024-03-13T09:59:59Z"

    fields = read_event_fields(row["payload"], row["event_type"], "segment")
    assert (fields.user_id, fields.anonymous_id) == ("u-1", "anon-1")
    assert fields.page_url == "https://shop.example/checkout"
    assert fields.referrer == "https://shop.example/cart"
    assert fields.properties == {"total": 12.5, "currency": "EUR"}
    context = orjson.loads(fields.context or "{}")
    assert context["locale"] == "de-DE" and context["timezone"] == "Europe/Berlin"
    assert context["os"] == {"name": "iOS", "version": "17.2"} and "page" not in context


@pytest.mark.parametrize(
    ("message", "event_type", "properties"),
    [
        (
            {"type": "page", "name": "Home", "properties": {"url": "https://a/"}},
            "page_view",
            {"url": "https://a/", "name": "Home"},
        ),
        ({"type": "screen", "name": "Cart"}, "screen_view", {"name": "Cart"}),
        ({"type": "identify", "traits": {"plan": "pro"}}, "identify", {"plan": "pro"}),
        ({"type": "group", "groupId": "g1", "traits": {"size": 5}}, "group", {"size": 5, "groupId": "g1"}),
        ({"type": "alias", "previousId": "anon-1"}, "alias", {"previousId": "anon-1"}),
    ],
)
def test_each_message_type_maps_its_event_type_and_properties(
    message: dict[str, object], event_type: str, properties: dict[str, object]
) -> None:
    row = message_row({**message, "messageId": "m-1", "userId": "u"}, CTX)
    assert row["event_type"] == event_type
    assert row["app"] == "default" and row["user_agent"] == "header-ua" and row["ip"] == "198.51.100.7"
    assert row["timestamp"] == RECEIVED  # no timestamp: stamped with the receive time
    assert read_event_fields(row["payload"], event_type, "segment").properties == properties


def test_page_url_falls_back_to_page_properties() -> None:
    row = message_row({"messageId": "m", "anonymousId": "a", "properties": {"url": "https://x/y"}}, CTX, "page")
    assert read_event_fields(row["payload"], "page_view", "segment").page_url == "https://x/y"


def test_message_ids_become_event_ids() -> None:
    upper = "6F1C1C3A-1F5E-4A8E-9D4E-2D5C1B0E7A11"
    assert segment_event_id(upper) == upper.lower()
    assert segment_event_id("ajs-next-abc") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "segment/ajs-next-abc"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("signup.step-2", "signup_step_2"),
        ("404 seen", "e_404_seen"),
        ("x" * 80, "x" * 64),
        ("Café Ordered", "café_ordered"),  # regression: accents were dropped
        ("購入完了", "購入完了"),  # regression: non-Latin names were rejected
        ("ＦＵＬＬ Width", "full_width"),  # NFKC
    ],
)
def test_track_names_become_snake_case_event_types(name: str, expected: str) -> None:
    assert event_name(name) == expected


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "track", "userId": "u", "event": "x"}, "messageId"),
        ({"type": "track", "messageId": "m", "event": "x"}, "userId"),
        ({"type": "track", "messageId": "m", "userId": "u"}, "event"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "!!!"}, "event"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "🎉"}, "event"),
        ({"type": "launch", "messageId": "m", "userId": "u"}, "type"),
        ({"type": "page", "messageId": "m", "userId": "u", "context": "web"}, "context"),
        ({"type": "page", "messageId": "m", "userId": "u", "timestamp": "3024-01-01T00:00:00Z"}, "timestamp"),
    ],
)
def test_invalid_messages_name_the_field(message: dict[str, object], field: str) -> None:
    with pytest.raises(StructuralError) as info:
        message_row(message, CTX)
    assert info.value.field == field


def test_nul_and_lone_surrogates_are_replaced_not_fatal() -> None:
    body = b'[{"uuid": "a", "page": "x\\u0000y", "k\\ud800": "\\udfff"}, {"uuid": "b"}]'
    assert parse_document(body) == [{"uuid": "a", "page": "x\ufffdy", "k\ufffd": "\ufffd"}, {"uuid": "b"}]
    assert parse_document(b'{"t": "caf\xc3\xa9 \xff"}') == {"t": "caf\u00e9 \ufffd"}  # invalid UTF-8 byte
    with pytest.raises(ApiError) as info:
        parse_document(b"[" * 20_000 + b"]" * 20_000)
    assert (info.value.status_code, info.value.error) == (400, "invalid_json")


def test_write_keys_are_stored_hashed_and_authenticate_their_source(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    key = add_source(path, "web", rate_limit="100/second")
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    registry = SourceRegistry([], path)
    source = registry.authenticate(key)
    assert source is not None and source.name == "web" and source.rate_limit == "100/second"
    assert registry.authenticate(key + "x") is None
    with pytest.raises(ValueError, match="already exists"):
        add_source(path, "web")


def test_write_keys_never_look_like_a_command_line_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: a bare token_urlsafe key starts with "-" one time in 64, and
    # `eventlake-replay --write-key <key>` then failed in argparse (exit 2).
    monkeypatch.setattr("warehouse.sources.secrets.token_urlsafe", lambda n: "-" + "A" * (4 * n // 3 - 1))
    key = add_source(tmp_path / "sources.json", "web")
    assert key == "elk_-" + "A" * 31
    assert SourceRegistry([], tmp_path / "sources.json").authenticate(key) is not None


def test_local_source_is_generated_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = ensure_local_source(settings)
    assert ensure_local_source(settings) == key
    assert [s.name for s in read_sources_file(settings.sources_path)] == ["local"]
    assert SourceRegistry.from_settings(settings).authenticate(key) is not None


# Regressions from the hostile-input trial (each was a 500, a lost event or a silent change).


def test_integer_timestamps_too_big_for_a_float_are_rejected_not_a_500() -> None:
    for value in (10**400, -(10**400), 10**19):
        with pytest.raises(StructuralError) as info:
            message_row({"messageId": "m", "userId": "u", "timestamp": value}, CTX, "page")
        assert info.value.reason == "invalid_timestamp"
    with pytest.raises(StructuralError) as info:
        message_row({"messageId": "m", "userId": "u", "timestamp": 0}, CTX, "page", batch_sent_at=10**400)
    assert info.value.field == "sentAt"


def test_repair_works_at_any_depth_the_parser_accepts() -> None:
    depth = 900
    body = b'{"k": ' + b"[" * depth + b'"a\\u0000"' + b"]" * depth + b"}"
    node = parse_document(body)["k"]
    for _ in range(depth):
        node = node[0]
    assert node == "a\ufffd"


def test_non_json_constants_and_a_bom() -> None:
    with pytest.raises(ApiError):
        parse_document(b'{"x": NaN, "y": "\\ud800"}')
    assert parse_document(b'\xef\xbb\xbf{"x": 1}') == {"x": 1}


def test_null_timestamp_falls_back_to_original_timestamp() -> None:
    message = {"messageId": "m", "userId": "u", "timestamp": None, "originalTimestamp": "2024-01-01T00:00:00Z"}
    assert message_row(message, CTX, "page")["timestamp"] == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("user_id", ["", "   ", None])
def test_blank_ids_are_not_an_identity(user_id: str | None) -> None:
    with pytest.raises(StructuralError) as info:
        message_row({"messageId": "m", "userId": user_id, "anonymousId": " "}, CTX, "page")
    assert info.value.field == "userId"


def test_batch_context_is_merged_under_the_message_context() -> None:
    message = {"messageId": "m", "userId": "u", "context": {"locale": "fr-FR"}}
    row = message_row(message, CTX, "page", batch_context={"app": {"name": "batch-app"}, "locale": "de-DE"})
    assert row["app"] == "batch-app"
    assert orjson.loads(row["payload"])["context"] == {"app": {"name": "batch-app"}, "locale": "fr-FR"}


def test_lowercase_rfc3339_t_and_z_are_accepted() -> None:
    row = message_row({"messageId": "m", "userId": "u", "timestamp": "2024-05-01t10:00:00z"}, CTX, "page")
    assert row["timestamp"] == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_non_ascii_basic_credentials_are_401_not_500() -> None:
    from starlette.requests import Request

    from ingest_api.auth import write_key_from

    for value in ("Basic \u00e9".encode("latin-1"), "Basic ключ".encode()):
        request = Request({"type": "http", "headers": [(b"authorization", value)]})
        with pytest.raises(ApiError) as info:
            write_key_from(request, None)
        assert (info.value.status_code, info.value.error) == (401, "invalid_authorization")


def test_a_source_added_while_running_is_picked_up_without_restart(tmp_path: Path) -> None:
    # Regression (new-user trial): `eventlake-sources add` needed a restart of the whole stack.
    path = tmp_path / "sources.json"
    registry = SourceRegistry([], path)
    key = add_source(path, "late")
    source = registry.authenticate(key)
    assert source is not None and source.name == "late"


def test_numbers_out_of_range_are_not_json_even_with_bad_characters() -> None:
    """Regression: orjson refuses 1e400, but a body that also held a lone surrogate went to the
    lenient parser, which read it as infinity and stored null."""
    with pytest.raises(ApiError) as info:
        parse_document(b'{"a": "\\ud800", "n": 1e400}')
    assert info.value.status_code == 400
