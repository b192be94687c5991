"""The event contract: what every wire format becomes in bronze, and the native format itself.

Every accepted event becomes one bronze ``raw_events`` row (:func:`bronze_row`) whatever
protocol carried it; the protocol is recorded in ``source_format`` and the write key's source
in ``source``. This module holds the rules all formats share (event ids, timestamps and
clock-skew correction, per-event size) and the native format; ``warehouse.segment`` holds
the Segment-compatible one and ``warehouse.formats`` reads either back for silver.

Native payload (``POST /v1/events``): one JSON object, or an array of them::

    {
      "uuid": "c0a8…",                       # required, non-empty string, unique per payload
      "timestamp": "2024-03-13T10:21:14Z",    # required: RFC 3339 (any offset), or epoch s / ms
      "sentAt": "2024-03-13T10:21:15Z",       # optional: client clock when sent (skew correction)
      "app": "shop",                          # optional, default "default"
      "page": "https://example.com/cart",     # URL of the screen/page (server events may omit it)
      "referrer": "https://example.com/",     # optional URL
      "user": "u-42",                         # optional user id
      "session": "s-7",                       # optional session id
      "location": "Lyon, France" | {…},       # optional: silver reads its country (ISO 3166-1)
      "context": {"library": {…}, "os": {…}}, # optional SDK context, Segment's keys (platform, device…)
      "userAgent": "Mozilla/5.0 …",           # optional, falls back to the User-Agent header
      "ip": "203.0.113.9",                    # optional, falls back to the peer address
      "events": {"click": {…}, "scroll": 80, "errors": {"stackTrace": "…"}, "<custom>": …}
    }

One payload becomes one row per key under ``events``; the key is the ``event_type``.
A payload without ``events`` (or with an empty object) is one ``page_view``. A scalar
event value is read as ``{"value": x}``. ``event_id = uuid5(EVENT_ID_NAMESPACE,
f"{uuid}/{event_type}")``, so replaying a payload yields the same ids.

Timestamps (all formats): an RFC 3339 string with any offset; a string without offset is
read as UTC and flagged ``timestamp_naive``; a JSON number is epoch seconds when its magnitude
is below 1e11 and epoch milliseconds otherwise (1e11 s is the year 5138, 1e11 ms is 1973-03);
years outside [1970, 2100) are rejected. When the client sends ``sentAt``, its clock skew is
removed as Segment, PostHog and Snowplow do: ``timestamp = received_at - (sent_at -
original_timestamp)`` (https://segment.com/docs/connections/spec/common/#timestamps); the
original text and ``sent_at`` are kept, and a result still more than 24 h after ``received_at``
is flagged ``timestamp_in_future`` (the pipeline's expectations decide what that means).

Structural problems (not an object, no ``uuid``, missing or unparseable timestamp,
``events``/``app`` of the wrong type, an event over the size limit) raise
:class:`StructuralError`; the ingest API rejects that one payload. Content rules (timestamp
range, name patterns, …) are the pipeline's job (``expectations/``) and send rows to quarantine.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

#: Fixed forever: changing it would give every replayed event a new id.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f2d1e-3c4a-5f6b-8d7e-9a0b1c2d3e4f")
DEFAULT_APP = "default"
DEFAULT_SOURCE = "default"
PAGE_VIEW = "page_view"
NATIVE_FORMAT = "native"

#: A payload carries at most this many keys under ``events`` (each becomes a row that repeats
#: the payload's other fields, so the count bounds how much one payload can expand).
MAX_EVENTS_PER_PAYLOAD = 100

#: Numbers below this are epoch seconds, above it epoch milliseconds.
EPOCH_SECONDS_BELOW = 100_000_000_000
#: Accepted client years: [MIN_YEAR, MAX_YEAR). Outside it a timestamp is a bug, not an event time.
MIN_YEAR, MAX_YEAR = 1970, 2100
#: A corrected timestamp more than this after received_at is flagged ``timestamp_in_future``.
FUTURE_TOLERANCE = timedelta(hours=24)

#: Keys never stored in bronze: credentials the client put in the body.
CREDENTIAL_KEYS = frozenset({"writeKey"})


class StructuralError(ValueError):
    """A payload that cannot become an event at all.

    Attributes:
        message: human-readable reason.
        field: the payload field at fault (``"uuid"``, ``"timestamp"``…), or ``None`` for the
            payload itself.
        reason: machine-readable kind, used for metrics and responses: ``invalid_event``,
            ``invalid_timestamp``, ``event_too_large`` or ``expansion_too_large``.
    """

    def __init__(self, message: str, field: str | None = None, reason: str = "invalid_event") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RequestContext:
    """What the HTTP edge knows about the request that carried a payload.

    ``received_at`` is a timezone-aware UTC datetime (µs precision). ``user_agent`` and
    ``ip`` are the header and peer address, used when the payload carries none. ``source`` is
    the source the write key belongs to; ``max_event_bytes`` bounds one event's JSON (``None``:
    no bound).
    """

    received_at: datetime
    user_agent: str | None = None
    ip: str | None = None
    source: str = DEFAULT_SOURCE
    source_format: str = NATIVE_FORMAT
    max_event_bytes: int | None = None


@dataclass(frozen=True)
class EventTime:
    """When an event happened, after clock-skew correction (all datetimes aware UTC, µs).

    ``original`` is the client's timestamp exactly as sent (text, or the number's repr);
    ``sent_at`` the client's clock at send time, if sent.
    """

    timestamp: datetime
    original: str
    sent_at: datetime | None
    naive: bool
    in_future: bool


def event_id_for(payload_uuid: str, event_type: str) -> str:
    """Deterministic event id: ``str(uuid5(EVENT_ID_NAMESPACE, f"{uuid}/{event_type}"))``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{payload_uuid}/{event_type}"))


def parse_client_timestamp(value: Any, field: str = "timestamp") -> tuple[datetime, bool]:
    """Parse a client timestamp into ``(aware UTC datetime, naive)`` (µs precision).

    Accepts an RFC 3339 / ISO 8601 string (any offset; a string without offset is read as UTC
    and ``naive`` is ``True``) or a JSON number of epoch seconds (magnitude below
    :data:`EPOCH_SECONDS_BELOW`) or milliseconds (RFC 3339: https://www.rfc-editor.org/rfc/rfc3339).

    Raises:
        StructuralError: ``reason="invalid_timestamp"`` for booleans, other types, NaN/inf,
            unparseable strings, or years outside [:data:`MIN_YEAR`, :data:`MAX_YEAR`).
    """
    if isinstance(value, bool) or value is None:
        raise StructuralError(f"{field} must be an RFC 3339 string or epoch seconds/milliseconds", field, _BAD_TIME)
    if isinstance(value, int | float):
        if isinstance(value, int) and abs(value) > _LARGEST_EPOCH:  # also: ints too big for a float
            raise StructuralError(f"{field} is out of range", field, _BAD_TIME)
        if not math.isfinite(value):
            raise StructuralError(f"{field} is not a finite number", field, _BAD_TIME)
        seconds = value if abs(value) < EPOCH_SECONDS_BELOW else value / 1000
        try:
            parsed, naive = datetime.fromtimestamp(seconds, tz=UTC), False
        except (OverflowError, OSError, ValueError) as exc:
            raise StructuralError(f"{field} {value!r:.40} is out of range", field, _BAD_TIME) from exc
    elif isinstance(value, str):
        if "\x00" in value:  # fromisoformat stops at a NUL and would ignore what follows
            raise StructuralError(f"{field} contains a NUL character", field, _BAD_TIME)
        try:  # upper(): RFC 3339 section 5.6 allows a lowercase "t" and "z"
            parsed = datetime.fromisoformat(value.strip().upper())
        except (ValueError, OverflowError) as exc:
            raise StructuralError(f"unparseable {field} {value[:64]!r}", field, _BAD_TIME) from exc
        naive = parsed.tzinfo is None
        try:  # OverflowError: year 1 or 9999 pushed out of range by the offset
            parsed = parsed.replace(tzinfo=UTC) if naive else parsed.astimezone(UTC)
        except OverflowError as exc:
            raise StructuralError(f"{field} {value[:64]!r} is out of range", field, _BAD_TIME) from exc
    else:
        raise StructuralError(f"{field} must be an RFC 3339 string or epoch seconds/milliseconds", field, _BAD_TIME)
    if not MIN_YEAR <= parsed.year < MAX_YEAR:
        raise StructuralError(f"{field} year {parsed.year} is outside [{MIN_YEAR}, {MAX_YEAR})", field, _BAD_TIME)
    return parsed, naive


_BAD_TIME = "invalid_timestamp"
_LARGEST_EPOCH = 10**18  # far past any valid epoch ms (year 2100 is ~4.1e12)


def resolve_event_time(timestamp: Any, sent_at: Any, received_at: datetime) -> EventTime:
    """Parse the client's timestamp and remove its clock skew when ``sent_at`` is given.

    ``timestamp = received_at - (sent_at - original)`` (Segment's spec, see module docstring);
    without ``sent_at`` the parsed timestamp is kept as is.

    Raises:
        StructuralError: either value is not a valid timestamp (see
            :func:`parse_client_timestamp`), or the correction leaves the supported range.
    """
    original, naive = parse_client_timestamp(timestamp)
    corrected, sent = original, None
    if sent_at is not None:
        sent, _ = parse_client_timestamp(sent_at, "sentAt")
        try:
            corrected = received_at - (sent - original)
        except OverflowError as exc:
            raise StructuralError("sentAt and timestamp are too far apart", "sentAt", _BAD_TIME) from exc
        if not MIN_YEAR <= corrected.year < MAX_YEAR:
            raise StructuralError("timestamp corrected by sentAt leaves the supported years", "sentAt", _BAD_TIME)
    return EventTime(
        timestamp=corrected,
        original=timestamp if isinstance(timestamp, str) else repr(timestamp),
        sent_at=sent,
        naive=naive,
        in_future=corrected - received_at > FUTURE_TOLERANCE,
    )


def dumps(value: Any) -> str:
    """JSON text of ``value`` as stored in bronze (orjson, compact, UTF-8).

    Raises:
        StructuralError: nesting deeper than orjson's 254 levels, or a value JSON cannot hold.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise StructuralError(f"payload cannot be stored: {exc}") from exc


def check_event_size(event_json: str, limit: int | None) -> None:
    """Refuse one event whose JSON text is over ``limit`` bytes (Segment's 32 KB per event).

    Raises:
        StructuralError: ``reason="event_too_large"``, naming the limit.
    """
    if limit is None or len(event_json) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return
    size = len(event_json.encode())
    if size > limit:
        raise StructuralError(f"event is {size} bytes, over the {limit}-byte limit per event", None, "event_too_large")


def bronze_row(
    *,
    event_id: str,
    event_type: str,
    app: str,
    ctx: RequestContext,
    time: EventTime,
    user_agent: str | None,
    ip: str | None,
    payload: str,
) -> dict[str, Any]:
    """One bronze ``raw_events`` row (keys = :data:`warehouse.tables.RAW_EVENTS` columns)."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "app": app,
        "source": ctx.source,
        "source_format": ctx.source_format,
        "received_at": ctx.received_at,
        "received_date": ctx.received_at.date(),
        "original_timestamp": time.original,
        "sent_at": time.sent_at,
        "timestamp": time.timestamp,
        "timestamp_naive": time.naive,
        "timestamp_in_future": time.in_future,
        "user_agent": user_agent,
        "ip": ip,
        "payload": payload,
    }


def optional_str(obj: dict[str, Any], key: str) -> str | None:
    """``obj[key]`` when it is a string, ``None`` when absent or null.

    Raises:
        StructuralError: the value is there but not a string (``field=key``).
    """
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StructuralError(f"{key} must be a string", key)
    return value


def native_event_count(payload: Any) -> int:
    """How many events a native payload becomes (1 without ``events``), before any validation."""
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, dict) and events:
        return min(len(events), MAX_EVENTS_PER_PAYLOAD)  # more is rejected, not stored
    return 1


def explode_payload(payload: Any, ctx: RequestContext, max_bytes: int | None = None) -> list[dict[str, Any]]:
    """Turn one native payload into bronze ``raw_events`` rows (one per event).

    Returns a list of dicts keyed by the bronze column names of
    :data:`warehouse.tables.RAW_EVENTS`. Each row's ``payload`` is the original JSON
    object (without credentials) with ``events`` narrowed to that row's event, so every row
    stands alone. ``max_bytes`` bounds the total size of the rows' ``payload`` texts (the
    expansion of one payload into many rows); it is checked before the rows are built.
    ``ctx.max_event_bytes`` bounds each row's ``payload``.

    Raises:
        StructuralError: when the payload cannot become events (see module docstring), has more
            than :data:`MAX_EVENTS_PER_PAYLOAD` events, nests deeper than 254 levels, has an
            event over ``ctx.max_event_bytes`` or would expand past ``max_bytes``.
    """
    if not isinstance(payload, dict):
        raise StructuralError(f"an event payload must be a JSON object, got {type(payload).__name__}")
    payload_uuid = payload.get("uuid")
    if not isinstance(payload_uuid, str) or not payload_uuid.strip():
        raise StructuralError("uuid is required and must be a non-empty string", "uuid")
    if "timestamp" not in payload:
        raise StructuralError("timestamp is required", "timestamp", _BAD_TIME)
    time = resolve_event_time(payload["timestamp"], payload.get("sentAt"), ctx.received_at)
    app = optional_str(payload, "app") or DEFAULT_APP
    user_agent = optional_str(payload, "userAgent") or ctx.user_agent
    ip = optional_str(payload, "ip") or ctx.ip
    events = payload.get("events")
    if events is not None and not isinstance(events, dict):
        raise StructuralError("events must be an object keyed by event name", "events")
    if CREDENTIAL_KEYS & payload.keys():
        payload = {key: value for key, value in payload.items() if key not in CREDENTIAL_KEYS}

    if events and len(events) > MAX_EVENTS_PER_PAYLOAD:
        raise StructuralError(f"at most {MAX_EVENTS_PER_PAYLOAD} events per payload, got {len(events)}", "events")
    if max_bytes is not None and events:
        others = dumps({key: value for key, value in payload.items() if key != "events"})
        expanded = len(events) * len(others) + len(dumps(events))
        if expanded > max_bytes:
            raise StructuralError(
                f"payload expands to {expanded} bytes of events, over the {max_bytes} limit",
                None,
                "expansion_too_large",
            )

    def row(event_type: str, text: str) -> dict[str, Any]:
        check_event_size(text, ctx.max_event_bytes)
        return bronze_row(
            event_id=event_id_for(payload_uuid, event_type),
            event_type=event_type,
            app=app,
            ctx=ctx,
            time=time,
            user_agent=user_agent,
            ip=ip,
            payload=text,
        )

    if not events:
        return [row(PAGE_VIEW, dumps(payload))]
    return [row(event_type, dumps({**payload, "events": {event_type: value}})) for event_type, value in events.items()]


class EventFields(NamedTuple):
    """The typed fields silver reads back out of a bronze row's ``payload`` (any format).

    A named tuple, not a frozen dataclass: it is built once per bronze row in silver's decode
    loop, where a frozen dataclass's ``__init__`` cost 1.4 µs against 0.6 µs.

    ``properties`` is the event's value as an object (native: a scalar ``x`` becomes
    ``{"value": x}``; ``page_view`` without a value has ``{}``; Segment: ``properties``, or
    ``traits`` for identify/group). ``location`` and ``context`` are JSON text when the client
    sent an object. Fields of the wrong type read as ``None``; content checks in the pipeline
    decide what that means.
    """

    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    page_url: str | None
    referrer: str | None
    location: str | None
    context: str | None
    properties: dict[str, Any]
    client_timestamp: str | None = None


def str_or_none(value: Any) -> str | None:
    """A string as is, a number as its text, anything else ``None``."""
    if value is None or isinstance(value, str):  # the common cases first: once per field per row
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def json_text_or_none(value: Any) -> str | None:
    """A string as is, ``None`` as ``None``, anything else as its JSON text (keys sorted, so the
    same object always reads the same)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def read_native_fields(payload: dict[str, Any], event_type: str) -> EventFields:
    """Read the typed fields of one native bronze row's parsed ``payload``."""
    events = payload.get("events") or {}
    value = events.get(event_type, {}) if isinstance(events, dict) else {}
    return EventFields(
        user_id=str_or_none(payload.get("user")),
        anonymous_id=None,
        session_id=str_or_none(payload.get("session")),
        page_url=str_or_none(payload.get("page")),
        referrer=str_or_none(payload.get("referrer")),
        location=json_text_or_none(payload.get("location")),
        context=json_text_or_none(context) if isinstance(context := payload.get("context"), dict) else None,
        properties=value if isinstance(value, dict) else {"value": value},
        client_timestamp=str_or_none(payload.get("timestamp")),
    )
