"""The Snowplow tracker protocol: tracker events to bronze rows and back, time, base64 and names."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from warehouse.contract.errors import StructuralError
from warehouse.contract.formats import read_event_fields
from warehouse.contract.rows import EVENT_ID_NAMESPACE, RequestContext
from warehouse.contract.snowplow import SNOWPLOW_FORMAT, tracker_event_row

RECEIVED = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
CTX = RequestContext(received_at=RECEIVED, user_agent="ua", ip="192.0.2.1", source="sp", source_format=SNOWPLOW_FORMAT)
EID = "0190f1d2-7b3c-7def-8a12-3456789abcde"
MS = int(RECEIVED.timestamp() * 1000)


def b64url(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def read(event: dict[str, object]) -> tuple[dict[str, object], object]:
    row = tracker_event_row({"eid": EID, **event}, CTX)
    return row, read_event_fields(row["payload"], row["event_type"], SNOWPLOW_FORMAT)


def test_times_follow_snowplows_derived_timestamp() -> None:
    # dtm 60 s before stm by the device's clock; the collector received it now: skew removed.
    row, _ = read({"e": "pv", "dtm": str(MS + 3_600_000 - 60_000), "stm": str(MS + 3_600_000)})
    assert row["timestamp"] == RECEIVED - timedelta(seconds=60)
    row, _ = read({"e": "pv", "dtm": str(MS - 5_000), "ttm": str(MS - 90_000)})  # the true timestamp wins
    assert row["timestamp"] == RECEIVED - timedelta(seconds=90)
    row, _ = read({"e": "pv"})
    assert row["timestamp"] == RECEIVED


def test_ids_pages_and_identity() -> None:
    row, fields = read(
        {
            "e": "pv",
            "url": "https://a.example/x",
            "refr": "https://b.example/",
            "page": "X",
            "uid": "u",
            "duid": "d",
            "sid": "s",
            "aid": "shop",
        }
    )
    assert (row["event_id"], row["event_type"], row["app"]) == (EID, "page_view", "shop")
    assert (fields.user_id, fields.anonymous_id, fields.session_id) == ("u", "d", "s")  # type: ignore[attr-defined]
    assert (fields.page_url, fields.referrer, fields.properties) == (
        "https://a.example/x",
        "https://b.example/",
        {"title": "X"},
    )  # type: ignore[attr-defined]
    assert tracker_event_row({"eid": "abc", "e": "pv"}, CTX)["event_id"] == str(
        uuid.uuid5(EVENT_ID_NAMESPACE, "snowplow/abc")
    )


def test_page_pings_give_the_depth_seen() -> None:
    row, fields = read(
        {
            "e": "pp",
            "pp_mix": "0",
            "pp_max": "0",
            "pp_miy": "100",
            "pp_may": "1200",
            "vp": "1024x800",
            "ds": "1024x4000",
        }
    )
    assert row["event_type"] == "scroll"
    assert fields.properties == {"minX": 0.0, "maxX": 0.0, "minY": 100.0, "maxY": 1200.0, "depth": 50.0}  # type: ignore[attr-defined]


def test_self_describing_events_are_named_by_their_schema_and_keep_it() -> None:
    error = {
        "schema": "iglu:com.snowplowanalytics.snowplow/application_error/jsonschema/1-0-2",
        "data": {"message": "boom", "exceptionName": "TypeError", "stackTrace": "at x"},
    }
    row, fields = read(
        {"e": "ue", "ue_px": b64url({"schema": "iglu:u/unstruct_event/jsonschema/1-0-0", "data": error})}
    )
    assert row["event_type"] == "error"
    assert fields.properties["type"] == "TypeError" and fields.properties["stackTrace"] == "at x"  # type: ignore[attr-defined]
    custom = {"schema": "iglu:com.acme/Checkout Started/jsonschema/1-0-0", "data": {"step": 2}}
    row, fields = read(
        {
            "e": "ue",
            "ue_pr": orjson.dumps({"schema": "iglu:u", "data": custom}).decode(),
            "cx": b64url({"data": [custom]}),
        }
    )
    assert row["event_type"] == "checkout_started"
    assert fields.properties == {"step": 2, "schema": custom["schema"]}  # type: ignore[attr-defined]
    assert orjson.loads(fields.context)["contexts"] == [custom]  # type: ignore[attr-defined]
    assert "cx" not in orjson.loads(row["payload"])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"e": "pv"}, "eid"),
        ({"eid": EID}, "e"),
        ({"eid": EID, "e": "se"}, "se_ac"),
        ({"eid": EID, "e": "ue"}, "ue_pr"),
        ({"eid": EID, "e": "ue", "ue_px": "%%%"}, "ue_px"),
        ({"eid": EID, "e": "pv", "co": "{not json"}, "co"),
        ({"eid": EID, "e": "pv", "url": {"nested": 1}}, "url"),
        ({"eid": EID, "e": "pv", "dtm": "soon"}, "timestamp"),
    ],
)
def test_events_that_cannot_be_stored_name_their_field(event: dict[str, object], field: str) -> None:
    with pytest.raises(StructuralError) as info:
        tracker_event_row(event, CTX)
    assert info.value.field == field


def test_breaker_findings_bad_characters_are_repaired_and_booleans_refused() -> None:
    """Regressions from breaking the routes: a lone surrogate or a NUL inside ue_px/cx is repaired
    (U+FFFD) as in bodies, not a rejected event; a boolean is not text."""
    inner = '{"schema": "iglu:com.acme/ev/jsonschema/1-0-0", "data": {"t": "cut \\ud83d", "n": "a\\u0000b"}}'
    encoded = base64.urlsafe_b64encode(('{"schema": "iglu:u", "data": ' + inner + "}").encode()).decode()
    row, fields = read({"e": "ue", "ue_px": encoded})
    assert fields.properties["t"] == "cut \ufffd" and fields.properties["n"] == "a\ufffdb"  # type: ignore[attr-defined]
    assert "\\u0000" not in row["payload"]
    with pytest.raises(StructuralError) as info:
        tracker_event_row({"eid": EID, "e": "pv", "aid": True}, CTX)
    assert info.value.field == "aid"
