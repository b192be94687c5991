"""What every wire format shares: event ids, the request context, the bronze row and its size limit,
and the typed fields silver reads back."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from warehouse.contract.errors import StructuralError
from warehouse.contract.time import EventTime
from warehouse.lake.tables import RAW_EVENTS

#: Fixed forever: changing it would give every replayed event a new id.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f2d1e-3c4a-5f6b-8d7e-9a0b1c2d3e4f")


DEFAULT_SOURCE = "default"


NATIVE_FORMAT = "native"


DEFAULT_APP = "default"


#: Keys never stored in bronze: credentials the client put in the body.
CREDENTIAL_KEYS = frozenset({"writeKey"})


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


def name_id(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))``, the same text at a third of the cost (~1 µs).

    Name-based UUID version 5 (RFC 9562 section 5.5): the first 16 bytes of
    SHA-1(namespace bytes + UTF-8 name), version 5 in the high nibble of byte 6, variant ``10`` in
    the top bits of byte 8, as lowercase 8-4-4-4-12 hex. It runs once per ingested event.

    Raises:
        UnicodeEncodeError: ``name`` holds a lone surrogate (as ``uuid.uuid5`` does).
    """
    x = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
#: RFC 9562 variant: the hex digit of byte 8's high nibble with its top two bits set to ``10``.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def event_id_for(payload_uuid: str, event_type: str) -> str:
    """Deterministic event id: ``str(uuid5(EVENT_ID_NAMESPACE, f"{uuid}/{event_type}"))``."""
    return name_id(f"{payload_uuid}/{event_type}")


def dumps(value: Any) -> str:
    """JSON text of ``value`` as stored in bronze (orjson, compact, UTF-8).

    Raises:
        StructuralError: nesting deeper than orjson's 254 levels, or a value JSON cannot hold.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise StructuralError(f"payload cannot be stored: {exc}") from exc


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes; an ASCII string's length without encoding it."""
    return len(text) if text.isascii() else len(text.encode())


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
    """One bronze ``raw_events`` row (keys = :data:`warehouse.lake.tables.RAW_EVENTS` columns)."""
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


def bronze_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Bronze rows (:func:`bronze_row`'s dicts) as one Arrow table of ``raw_events``'s schema.

    ``pa.Table.from_pylist``: 1.2 µs a row (pyarrow 26; as fast as transposing the rows by hand, and
    twice as fast as a list comprehension per column), plus ~50 µs a call, so the group commit calls it
    once per micro-batch, not per request.

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: a value does not fit its column's type.
    """
    return pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)


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


def nonblank_str(value: Any) -> str | None:
    """``value`` when it is a string with something besides whitespace, else ``None``."""
    return value if isinstance(value, str) and value.strip() else None


def json_text_or_none(value: Any) -> str | None:
    """A string as is, ``None`` as ``None``, anything else as its JSON text (keys sorted, so the
    same object always reads the same)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
