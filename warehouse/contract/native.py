"""Native payload (``POST /v1/events``): one JSON object, or an array of them::

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
"""

from __future__ import annotations

from typing import Any

from warehouse.contract.errors import StructuralError
from warehouse.contract.rows import (
    CREDENTIAL_KEYS,
    DEFAULT_APP,
    EventFields,
    RequestContext,
    bronze_row,
    check_event_size,
    dumps,
    event_id_for,
    json_text_or_none,
    optional_str,
    str_or_none,
    utf8_len,
)
from warehouse.contract.time import BAD_TIMESTAMP, resolve_event_time

PAGE_VIEW = "page_view"


#: A payload carries at most this many keys under ``events`` (each becomes a row that repeats
#: the payload's other fields, so the count bounds how much one payload can expand).
MAX_EVENTS_PER_PAYLOAD = 100


def native_event_count(payload: Any) -> int:
    """How many events a native payload becomes (1 without ``events``), before any validation."""
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, dict) and events:
        return min(len(events), MAX_EVENTS_PER_PAYLOAD)  # more is rejected, not stored
    return 1


def explode_payload(payload: Any, ctx: RequestContext, max_bytes: int | None = None) -> list[dict[str, Any]]:
    """Turn one native payload into bronze ``raw_events`` rows (one per event).

    Returns a list of dicts keyed by the bronze column names of
    :data:`warehouse.lake.tables.RAW_EVENTS`. Each row's ``payload`` is the original JSON
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
        raise StructuralError("timestamp is required", "timestamp", BAD_TIMESTAMP)
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
    if max_bytes is not None and events and len(events) > 1:  # one row's text is checked once built, below
        others = dumps({key: value for key, value in payload.items() if key != "events"})
        expanded = len(events) * utf8_len(others) + utf8_len(dumps(events))
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

    if not events or len(events) == 1:  # the payload is its one row's text (its one event kept as is)
        text = dumps(payload)
        built = row(next(iter(events)) if events else PAGE_VIEW, text)  # first: its own size limit (413)
        if max_bytes is not None and (size := utf8_len(text)) > max_bytes:
            raise StructuralError(
                f"payload expands to {size} bytes of events, over the {max_bytes} limit",
                None,
                "expansion_too_large",
            )
        return [built]
    return [row(event_type, dumps({**payload, "events": {event_type: value}})) for event_type, value in events.items()]


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
