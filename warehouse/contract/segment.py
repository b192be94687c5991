"""The Segment-compatible format: Segment HTTP Tracking API messages → bronze rows, and back.

Spec: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/ and the
common fields at https://segment.com/docs/connections/spec/common/. RudderStack and Jitsu
accept the same messages. One message is one event:

========  =====================  ==============================================
type      event_type             properties (silver)
========  =====================  ==============================================
track     ``event``, snake_case  ``properties``
page      ``page_view``          ``properties`` (+ ``name``, ``category``)
screen    ``screen_view``        ``properties`` (+ ``name``, ``category``)
identify  ``identify``           ``traits``
group     ``group``              ``traits`` + ``groupId``
alias     ``alias``              ``previousId``
========  =====================  ==============================================

``messageId`` → ``event_id`` (the id itself when it is a UUID, else
``uuid5(EVENT_ID_NAMESPACE, "segment/<messageId>")``), so a retried message keeps its id.
``userId``/``anonymousId`` are kept apart; ``context.page.url``/``referrer`` are the page,
``context.userAgent``/``ip`` override the request's, ``context.app.name`` is the ``app`` and the
rest of ``context`` (locale, timezone, device, os, library…) is kept as JSON. ``timestamp``
falls back to ``originalTimestamp``, then to the receive time; ``sentAt`` (message or batch)
corrects clock skew (``warehouse.contract.time``).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any, Literal, get_args

from warehouse.contract.errors import StructuralError
from warehouse.contract.rows import (
    CREDENTIAL_KEYS,
    DEFAULT_APP,
    EventFields,
    RequestContext,
    bronze_row,
    check_event_size,
    dumps,
    json_text_or_none,
    name_id,
    optional_str,
    str_or_none,
)
from warehouse.contract.time import resolve_event_time

SEGMENT_FORMAT = "segment"
MessageType = Literal["track", "page", "screen", "identify", "group", "alias"]
MESSAGE_TYPES: tuple[MessageType, ...] = get_args(MessageType)
#: analytics.js posts to one-letter paths: /v1/t, /v1/p, …
SHORT_PATHS = {name[0]: name for name in MESSAGE_TYPES}
#: Every Segment-compatible route path: the batch, one per message type and the one-letter ones.
SEGMENT_PATHS = frozenset(["/v1/batch", "/v1/import"] + [f"/v1/{name}" for name in (*MESSAGE_TYPES, *SHORT_PATHS)])
_FIXED_EVENT_TYPES = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
#: context keys that become columns of their own (not kept in the ``context`` JSON).
_CONTEXT_COLUMNS = ("page", "userAgent", "ip", "location")
_NOT_NAME_CHARS = re.compile(r"[\W_]+")


def event_name(name: str) -> str:
    """A track call's event name as an event_type: lower snake_case, at most 64 characters.

    ``"Order Completed"`` → ``"order_completed"``, ``"Café Ordered"`` → ``"café_ordered"``,
    ``"購入完了"`` stays as is: letters and digits of any script are kept (Unicode NFKC, then
    case-folded), runs of anything else become ``_``. A name starting with a digit gets an ``e_``
    prefix. The name as sent stays in the bronze payload.

    Raises:
        StructuralError: no letter or digit in the name, e.g. only emoji (``field="event"``).
    """
    snake = _NOT_NAME_CHARS.sub("_", unicodedata.normalize("NFKC", name).casefold()).strip("_")
    if not snake:
        raise StructuralError("event must contain a letter or digit", "event")
    if snake[0].isdigit():
        snake = f"e_{snake}"
    return snake[:64].rstrip("_")


def segment_event_id(message_id: str) -> str:
    """``event_id`` for a ``messageId``: the UUID itself (canonical form), else its uuid5."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return name_id(f"segment/{message_id}")


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StructuralError(f"{key} must be an object", key)
    return value


def _present_id(value: Any) -> bool:
    text = str_or_none(value)
    return text is not None and bool(text.strip())


def _identify(message: Any, message_type: str | None) -> tuple[str, str, str]:
    """A message's ``(type, messageId, event_type)``, checked as :func:`message_row` documents.

    Raises:
        StructuralError: see :func:`message_row`.
    """
    if not isinstance(message, dict):
        raise StructuralError(f"a message must be a JSON object, got {type(message).__name__}")
    kind = message_type or message.get("type")
    if kind not in MESSAGE_TYPES:
        raise StructuralError(f"type must be one of {', '.join(MESSAGE_TYPES)}", "type")
    message_id = message.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise StructuralError("messageId is required and must be a non-empty string", "messageId")
    if not _present_id(message.get("userId")) and not _present_id(message.get("anonymousId")):
        raise StructuralError("userId or anonymousId is required (a non-blank string or a number)", "userId")
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str):
            raise StructuralError("event is required for a track call and must be a string", "event")
        return kind, message_id, event_name(event)
    return kind, message_id, _FIXED_EVENT_TYPES[kind]


def message_row(
    message: Any,
    ctx: RequestContext,
    message_type: str | None = None,
    batch_sent_at: Any = None,
    batch_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn one Segment message into its bronze ``raw_events`` row.

    Args:
        message: the message object as sent.
        ctx: the request's context (its ``source_format`` is recorded, ``"segment"`` from the routes).
        message_type: the type the route implies (``/v1/track`` → ``"track"``); ``None`` for
            ``/v1/batch``, where each message carries its own ``type``.
        batch_sent_at: the batch's ``sentAt``, used when the message has none.
        batch_context: the batch's ``context``, merged under the message's own (shallow).

    Raises:
        StructuralError: not an object, unknown ``type``, missing ``messageId``, neither
            ``userId`` nor ``anonymousId``, a track call without ``event``, a bad timestamp,
            or over ``ctx.max_event_bytes``.
    """
    kind, message_id, event_type = _identify(message, message_type)
    context = _object(message, "context")
    _object(message, "properties")
    _object(message, "traits")
    if batch_context:  # a batch-level context applies to every message; the message's own keys win
        context = {**batch_context, **context}
        message = {**message, "context": context}

    timestamp = message.get("timestamp")
    if timestamp is None:
        timestamp = message.get("originalTimestamp")
    sent_at = message.get("sentAt", batch_sent_at)
    if timestamp is None:  # Segment stamps such messages with the receive time
        timestamp, sent_at = ctx.received_at.isoformat(), None
    time = resolve_event_time(timestamp, sent_at, ctx.received_at)
    app = optional_str(_object(context, "app"), "name") or DEFAULT_APP

    stored = {key: value for key, value in message.items() if key not in CREDENTIAL_KEYS}
    stored["type"] = kind
    if sent_at is not None and "sentAt" not in stored:
        stored["sentAt"] = sent_at
    text = dumps(stored)
    check_event_size(text, ctx.max_event_bytes)
    return bronze_row(
        event_id=segment_event_id(message_id),
        event_type=event_type,
        app=app,
        ctx=ctx,
        time=time,
        user_agent=optional_str(context, "userAgent") or ctx.user_agent,
        ip=optional_str(context, "ip") or ctx.ip,
        payload=text,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_segment_fields(message: dict[str, Any], event_type: str) -> EventFields:
    """Read the typed fields of one Segment bronze row's parsed ``payload`` (see module table)."""
    kind = message.get("type")
    context = _dict(message.get("context"))
    page = _dict(context.get("page"))
    properties = dict(_dict(message.get("properties")))
    if kind in ("page", "screen"):
        for key in ("name", "category"):
            if isinstance(message.get(key), str):
                properties.setdefault(key, message[key])
    elif kind == "identify":
        properties = dict(_dict(message.get("traits")) or _dict(context.get("traits")))
    elif kind == "group":
        properties = {**_dict(message.get("traits")), "groupId": message.get("groupId")}
    elif kind == "alias":
        properties = {"previousId": message.get("previousId")}
    rest = {key: value for key, value in context.items() if key not in _CONTEXT_COLUMNS}
    return EventFields(
        user_id=str_or_none(message.get("userId")),
        anonymous_id=str_or_none(message.get("anonymousId")),
        session_id=str_or_none(context.get("sessionId")),
        page_url=str_or_none(page.get("url") or (properties.get("url") if kind == "page" else None)),
        referrer=str_or_none(page.get("referrer") or (properties.get("referrer") if kind == "page" else None)),
        location=json_text_or_none(context.get("location")),
        context=json_text_or_none(rest) if rest else None,
        properties=properties,
        client_timestamp=str_or_none(
            message["timestamp"] if message.get("timestamp") is not None else message.get("originalTimestamp")
        ),
    )
