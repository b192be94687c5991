"""The event contract: how a client's native payload becomes bronze rows, and back.

Native payload (``POST /v1/events``): one JSON object, or an array of them::

    {
      "uuid": "c0a8…",                       # required, non-empty string, unique per payload
      "timestamp": "2024-03-13T10:21:14Z",    # required, RFC 3339 string or epoch milliseconds
      "app": "shop",                          # optional, default "default"
      "page": "https://example.com/cart",     # URL of the screen/page (server events may omit it)
      "referrer": "https://example.com/",     # optional URL
      "user": "u-42",                         # optional user id
      "session": "s-7",                       # optional session id
      "location": "Berlin, DE" | {…},         # optional
      "userAgent": "Mozilla/5.0 …",           # optional, falls back to the User-Agent header
      "ip": "203.0.113.9",                    # optional, falls back to the peer address
      "events": {"click": {…}, "scroll": 80, "errors": {"stackTrace": "…"}, "<custom>": …}
    }

One payload becomes one row per key under ``events``; the key is the ``event_type``.
A payload without ``events`` (or with an empty object) is one ``page_view``. A scalar
event value is read as ``{"value": x}``. ``event_id = uuid5(EVENT_ID_NAMESPACE,
f"{uuid}/{event_type}")``, so replaying a payload yields the same ids.

Structural problems (not an object, no ``uuid``, missing or unparseable timestamp,
``events``/``app`` of the wrong type) raise :class:`StructuralError`; the ingest API
rejects that one payload. Content rules (timestamp range, name patterns, …) are the
pipeline's job (``expectations/``) and send rows to quarantine.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

#: Fixed forever: changing it would give every replayed event a new id.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f2d1e-3c4a-5f6b-8d7e-9a0b1c2d3e4f")
DEFAULT_APP = "default"
PAGE_VIEW = "page_view"
NATIVE_FORMAT = "native"

#: A payload carries at most this many keys under ``events`` (each becomes a row that repeats
#: the payload's other fields, so the count bounds how much one payload can expand).
MAX_EVENTS_PER_PAYLOAD = 100

_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the end of datetime's range


class StructuralError(ValueError):
    """A payload that cannot become an event at all.

    Attributes:
        field: the payload field at fault (``"uuid"``, ``"timestamp"``…), or ``None`` for the
            payload itself.
        message: human-readable reason.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RequestContext:
    """What the HTTP edge knows about the request that carried a payload.

    ``received_at`` is a timezone-aware UTC datetime (µs precision). ``user_agent`` and
    ``ip`` are the header and peer address, used when the payload carries none.
    """

    received_at: datetime
    user_agent: str | None = None
    ip: str | None = None
    source_format: str = NATIVE_FORMAT


def event_id_for(payload_uuid: str, event_type: str) -> str:
    """Deterministic event id: ``str(uuid5(EVENT_ID_NAMESPACE, f"{uuid}/{event_type}"))``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{payload_uuid}/{event_type}"))


def parse_client_timestamp(value: Any) -> datetime:
    """Parse a client timestamp into an aware UTC datetime (µs precision).

    Accepts an RFC 3339 / ISO 8601 string (any offset; a naive string is read as UTC) or a
    number of epoch milliseconds (RFC 3339: https://www.rfc-editor.org/rfc/rfc3339).

    Raises:
        StructuralError: for booleans, other types, NaN/inf, out-of-range numbers or
            unparseable strings (``field="timestamp"``).
    """
    if isinstance(value, bool) or value is None:
        raise StructuralError("timestamp must be an RFC 3339 string or epoch milliseconds", "timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_MS:
            raise StructuralError("timestamp in epoch milliseconds is out of range", "timestamp")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        if "\x00" in value:  # fromisoformat stops at a NUL and would ignore what follows
            raise StructuralError("timestamp contains a NUL character", "timestamp")
        try:
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 pushed out of range by the offset
            raise StructuralError(f"unparseable timestamp {value[:64]!r}", "timestamp") from exc
    raise StructuralError("timestamp must be an RFC 3339 string or epoch milliseconds", "timestamp")


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StructuralError(f"{key} must be a string", key)
    return value


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # orjson writes at most 254 nesting levels
        raise StructuralError(f"payload cannot be stored: {exc}") from exc


def explode_payload(payload: Any, ctx: RequestContext, max_bytes: int | None = None) -> list[dict[str, Any]]:
    """Turn one native payload into bronze ``raw_events`` rows (one per event).

    Returns a list of dicts keyed by the bronze column names of
    :data:`warehouse.tables.RAW_EVENTS`. Each row's ``payload`` is the original JSON
    object with ``events`` narrowed to that row's event, so every row stands alone.
    ``max_bytes`` bounds the total size of the rows' ``payload`` texts (the expansion of one
    payload into many rows); it is checked before the rows are built.

    Raises:
        StructuralError: when the payload cannot become events (see module docstring), has more
            than :data:`MAX_EVENTS_PER_PAYLOAD` events, nests deeper than 254 levels, or would
            expand past ``max_bytes``.
    """
    if not isinstance(payload, dict):
        raise StructuralError(f"an event payload must be a JSON object, got {type(payload).__name__}")
    payload_uuid = payload.get("uuid")
    if not isinstance(payload_uuid, str) or not payload_uuid.strip():
        raise StructuralError("uuid is required and must be a non-empty string", "uuid")
    if "timestamp" not in payload:
        raise StructuralError("timestamp is required", "timestamp")
    timestamp = parse_client_timestamp(payload["timestamp"])
    app = _optional_str(payload, "app") or DEFAULT_APP
    user_agent = _optional_str(payload, "userAgent") or ctx.user_agent
    ip = _optional_str(payload, "ip") or ctx.ip
    events = payload.get("events")
    if events is not None and not isinstance(events, dict):
        raise StructuralError("events must be an object keyed by event name", "events")

    if events and len(events) > MAX_EVENTS_PER_PAYLOAD:
        raise StructuralError(f"at most {MAX_EVENTS_PER_PAYLOAD} events per payload, got {len(events)}", "events")
    if max_bytes is not None and events:
        others = _dumps({key: value for key, value in payload.items() if key != "events"})
        expanded = len(events) * len(others) + len(_dumps(events))
        if expanded > max_bytes:
            raise StructuralError(f"payload expands to {expanded} bytes of events, over the {max_bytes} limit")

    client_timestamp = payload["timestamp"]
    common = {
        "app": app,
        "source_format": ctx.source_format,
        "received_at": ctx.received_at,
        "received_date": ctx.received_at.date(),
        "client_timestamp": client_timestamp if isinstance(client_timestamp, str) else repr(client_timestamp),
        "timestamp": timestamp,
        "user_agent": user_agent,
        "ip": ip,
    }
    if not events:
        return [
            {
                "event_id": event_id_for(payload_uuid, PAGE_VIEW),
                "event_type": PAGE_VIEW,
                "payload": _dumps(payload),
                **common,
            }
        ]
    return [
        {
            "event_id": event_id_for(payload_uuid, event_type),
            "event_type": event_type,
            "payload": _dumps({**payload, "events": {event_type: value}}),
            **common,
        }
        for event_type, value in events.items()
    ]


@dataclass(frozen=True)
class EventFields:
    """The typed fields silver reads back out of a bronze row's ``payload``.

    ``properties`` is the event's value as an object (a scalar ``x`` becomes ``{"value": x}``;
    ``page_view`` without a value has ``{}``). ``location`` is kept as JSON text when the
    client sent an object. Fields of the wrong type read as ``None``; content checks in the
    pipeline decide what that means.
    """

    user_id: str | None
    session_id: str | None
    page_url: str | None
    referrer: str | None
    location: str | None
    properties: dict[str, Any]


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def read_event_fields(payload_json: str, event_type: str) -> EventFields:
    """Read the typed fields of one bronze row back from its ``payload`` JSON text.

    Raises:
        orjson.JSONDecodeError: when ``payload_json`` is not JSON (bronze only holds JSON
            written by :func:`explode_payload`, so this means a corrupted row).
    """
    payload = orjson.loads(payload_json)
    events = payload.get("events") or {}
    value = events.get(event_type, {}) if isinstance(events, dict) else {}
    properties = value if isinstance(value, dict) else {"value": value}
    location = payload.get("location")
    if location is not None and not isinstance(location, str):
        location = orjson.dumps(location).decode()
    return EventFields(
        user_id=_str_or_none(payload.get("user")),
        session_id=_str_or_none(payload.get("session")),
        page_url=_str_or_none(payload.get("page")),
        referrer=_str_or_none(payload.get("referrer")),
        location=location,
        properties=properties,
    )
