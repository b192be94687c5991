"""The PostHog capture format: PostHog events → bronze rows, and back.

Spec: PostHog's capture API (https://posthog.com/docs/api/capture) as its SDKs send it
(posthog-js, posthog-python: ``{"event", "distinct_id", "properties", "timestamp", "uuid",
"$set", "$set_once", "offset"}``). One PostHog event is one event:

=======================  =====================  ==============================================
PostHog event            event_type             properties (silver)
=======================  =====================  ==============================================
``$pageview``            ``page_view``          the event's own properties (not ``$``-prefixed)
``$screen``              ``screen_view``        same, plus ``name`` (``$screen_name``)
``$pageleave``           ``page_leave``         same
``$autocapture``         ``click`` (else its    ``selector`` (the element: tag, id, classes,
                         ``$event_type``:       from ``$elements_chain`` or ``$elements``),
                         ``submit``, ``change``) ``text``, ``tag``, ``href`` and own properties
``$exception``           ``error``              ``type``, ``message``, ``stackTrace``
                                                (``$exception_list`` or the older
                                                ``$exception_type``/``_message``)
``$identify``, ``$set``  ``identify``           ``$set_once`` then ``$set`` (the person's)
``$create_alias``        ``alias``              ``previousId`` (``properties.alias``)
``$groupidentify``       ``group``              ``$group_set`` + ``groupId``/``groupType``
anything else            its name, snake_case   own properties
                         (``$`` dropped)
=======================  =====================  ==============================================

Identity: ``distinct_id`` is the user id, unless the event is anonymous (``$is_identified`` false,
``$process_person_profile`` false, or ``distinct_id`` equal to ``$device_id``): then it is the
anonymous id. The anonymous id of an identified event is ``$anon_distinct_id`` (``$identify``)
or ``$device_id``, so identity stitching links them. ``$session_id`` is the session,
``$current_url``/``$referrer`` the page, ``$raw_user_agent``/``$ip`` override the request's. The
``app`` is ``$app_name`` (mobile SDKs), else ``$host`` (web), else ``default``. The other
``$``-prefixed properties (``$lib``, ``$os``, ``$browser``, ``$screen_width``…) are kept as
``context`` JSON, with the SDK, OS and app also under Segment's ``library``, ``os`` and ``app`` keys
(enrichment reads the platform from those).

``uuid`` → ``event_id`` (the UUID itself, canonical, else ``uuid5(EVENT_ID_NAMESPACE,
"posthog/<uuid>")``), so an SDK's retry keeps its id; an event without ``uuid`` gets
``uuid5(EVENT_ID_NAMESPACE, "posthog-content/<its JSON>")`` without ``sent_at``, ``offset`` and the
token, which a resend changes.
Time, as PostHog's ingestion computes it (``parseEventTimestamp``): ``timestamp`` corrected by
``sent_at`` (the event's, else the batch's) when both are there; ``timestamp`` alone; else
``received_at - offset`` (ms, posthog-js); else the receive time. The project token
(``api_key``/``token``, at the top or in ``properties``) is the write key and never stored.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
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
    json_text_or_none,
    name_id,
    nonblank_str,
    str_or_none,
)
from warehouse.contract.segment import event_name
from warehouse.contract.time import BAD_TIMESTAMP, EventTime, resolve_event_time

POSTHOG_FORMAT = "posthog"

#: Body and property keys holding the project token: the write key, never stored.
TOKEN_KEYS = ("api_key", "token")

_FIXED_EVENT_TYPES = {
    "$pageview": "page_view",
    "$screen": "screen_view",
    "$pageleave": "page_leave",
    "$exception": "error",
    "$identify": "identify",
    "$set": "identify",
    "$create_alias": "alias",
    "$groupidentify": "group",
}
#: Properties read into columns of their own (not kept in ``context``).
_COLUMN_PROPERTIES = frozenset(
    {
        "distinct_id",
        "$session_id",
        "$current_url",
        "$referrer",
        "$raw_user_agent",
        "$ip",
        "$device_id",
        "$anon_distinct_id",
        "$is_identified",
        "$app_name",
        "$host",
        *TOKEN_KEYS,
    }
)
#: Properties that are the event's content (read into ``properties``), not context.
_CONTENT_PROPERTIES = frozenset(
    {
        "$set",
        "$set_once",
        "$elements",
        "$elements_chain",
        "$el_text",
        "$event_type",
        "$exception_list",
        "$exception_type",
        "$exception_message",
        "$exception_stack_trace_raw",
        "$screen_name",
        "$group_type",
        "$group_key",
        "$group_set",
        "alias",
    }
)


#: What an SDK changes when it sends an event again: left out of a content-derived event id.
_SEND_KEYS = frozenset({"sent_at", "offset", *TOKEN_KEYS})


def posthog_event_id(event: dict[str, Any]) -> str:
    """``event_id`` of a PostHog event (module docstring): from its ``uuid``, else its content
    without what a resend changes (``sent_at``, ``offset``, the token)."""
    value = event.get("uuid")
    if isinstance(value, str) and value.strip():
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return name_id(f"posthog/{value}")
    content = {key: item for key, item in event.items() if key not in _SEND_KEYS}
    digest = hashlib.sha256(dumps(content).encode()).hexdigest()
    return name_id(f"posthog-content/{digest}")


def posthog_event_type(name: str, properties: dict[str, Any]) -> str:
    """The ``event_type`` of PostHog event ``name`` (module table).

    Raises:
        StructuralError: a name with no letter or digit (``field="event"``).
    """
    fixed = _FIXED_EVENT_TYPES.get(name)
    if fixed is not None:
        return fixed
    if name == "$autocapture":
        kind = properties.get("$event_type")
        return "click" if kind in (None, "click") or not isinstance(kind, str) else event_name(kind)
    return event_name(name)


def distinct_id_of(event: dict[str, Any]) -> str | None:
    """The event's ``distinct_id`` (top level, else in ``properties``) as text; ``None`` if blank."""
    properties = _properties(event)
    for value in (event.get("distinct_id"), properties.get("distinct_id"), properties.get("$distinct_id")):
        text = str_or_none(value)
        if text is not None and text.strip():
            return text
    return None


def token_of(document: Any) -> str | None:
    """The project token a PostHog body carries: ``api_key``/``token`` of the body (an object), of
    its events (``batch`` items, array items, or the body itself) or of their ``properties``;
    ``None`` when there is none.

    Raises:
        StructuralError: the body carries two different tokens (``field="api_key"``): PostHog's
            capture refuses a batch of several projects too.
    """
    holders: list[Any] = []
    events: list[Any] = []
    if isinstance(document, dict):
        holders.append(document)
        events = document["batch"] if isinstance(document.get("batch"), list) else [document]
    elif isinstance(document, list):
        events = document
    for event in events:
        if isinstance(event, dict):
            holders.append(event)
            if isinstance(event.get("properties"), dict):
                holders.append(event["properties"])
    found = {
        str(holder[key]).strip()
        for holder in holders
        for key in TOKEN_KEYS
        if isinstance(holder.get(key), str) and holder[key].strip()
    }
    if len(found) > 1:
        raise StructuralError(f"the body carries {len(found)} different project tokens", "api_key")
    return found.pop() if found else None


def _event_time(event: dict[str, Any], batch_sent_at: Any, ctx: RequestContext) -> EventTime:
    """When the event happened (module docstring; PostHog's ``parseEventTimestamp``)."""
    timestamp = event.get("timestamp")
    sent_at = event.get("sent_at", batch_sent_at)
    if timestamp is not None:
        return resolve_event_time(timestamp, sent_at, ctx.received_at)
    offset = event.get("offset")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int | float) or not 0 <= offset < 10**11:
            raise StructuralError("offset must be milliseconds before sending (a number ≥ 0)", "offset", BAD_TIMESTAMP)
        at = ctx.received_at - timedelta(milliseconds=offset)
        return EventTime(timestamp=at, original=at.isoformat(), sent_at=None, naive=False, in_future=False)
    return resolve_event_time(ctx.received_at.isoformat(), None, ctx.received_at)


def event_row(event: Any, ctx: RequestContext, batch_sent_at: Any = None) -> dict[str, Any]:
    """Turn one PostHog event into its bronze ``raw_events`` row.

    ``batch_sent_at``: the batch's ``sent_at``, used when the event has none. The stored payload
    is the event without its token, with the batch's ``sent_at`` added when it applied.

    Raises:
        StructuralError: not an object, no ``event`` name, no ``distinct_id``, ``properties`` not
            an object, a bad timestamp, ``sent_at`` or ``offset``, or over ``ctx.max_event_bytes``.
    """
    if not isinstance(event, dict):
        raise StructuralError(f"an event must be a JSON object, got {type(event).__name__}")
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        raise StructuralError("event is required and must be a non-empty string", "event")
    properties = event.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise StructuralError("properties must be an object", "properties")
    if distinct_id_of(event) is None:
        raise StructuralError("distinct_id is required (a non-blank string or a number)", "distinct_id")
    event_type = posthog_event_type(name, properties)
    time = _event_time(event, batch_sent_at, ctx)
    stored = {key: value for key, value in event.items() if key not in TOKEN_KEYS and key not in CREDENTIAL_KEYS}
    if any(key in properties for key in TOKEN_KEYS):
        stored["properties"] = {key: value for key, value in properties.items() if key not in TOKEN_KEYS}
    if batch_sent_at is not None and "sent_at" not in stored and event.get("timestamp") is not None:
        stored["sent_at"] = batch_sent_at
    text = dumps(stored)
    check_event_size(text, ctx.max_event_bytes)
    return bronze_row(
        event_id=posthog_event_id(stored),
        event_type=event_type,
        app=_app(properties),
        ctx=ctx,
        time=time,
        user_agent=nonblank_str(properties.get("$raw_user_agent")) or ctx.user_agent,
        ip=nonblank_str(properties.get("$ip")) or ctx.ip,
        payload=text,
    )


def _properties(event: dict[str, Any]) -> dict[str, Any]:
    """The event's ``properties`` when an object, else empty."""
    properties = event.get("properties")
    return properties if isinstance(properties, dict) else {}


def _app(properties: dict[str, Any]) -> str:
    return nonblank_str(properties.get("$app_name")) or nonblank_str(properties.get("$host")) or DEFAULT_APP


def _identity(event: dict[str, Any], properties: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(user_id, anonymous_id)`` of an event (module docstring)."""
    distinct = distinct_id_of(event)
    device = str_or_none(properties.get("$device_id"))
    if event.get("event") == "$identify":
        return distinct, str_or_none(properties.get("$anon_distinct_id")) or device
    anonymous = (
        properties.get("$is_identified") is False
        or properties.get("$process_person_profile") is False
        or (device is not None and device == distinct)
    )
    if anonymous:
        return None, distinct
    return distinct, device if device != distinct else None


def _selector(properties: dict[str, Any]) -> dict[str, Any]:
    """The clicked element of an ``$autocapture`` event: ``selector`` (``tag#id.class``), ``tag``,
    ``text`` and ``href`` when known, from ``$elements`` (posthog-js before 1.x) or the first
    element of ``$elements_chain`` (``a.btn:attr__href="/x"nth-child="1"text="Buy";div…``)."""
    element: dict[str, Any] = {}
    elements = properties.get("$elements")
    if isinstance(elements, list) and elements and isinstance(elements[0], dict):
        first = elements[0]
        tag = str_or_none(first.get("tag_name"))
        classes = first.get("attr__class") or first.get("classes") or ""
        if isinstance(classes, list):
            classes = " ".join(str(c) for c in classes)
        element = {
            "tag": tag,
            "id": str_or_none(first.get("attr__id")),
            "classes": str(classes).split(),
            "text": str_or_none(first.get("$el_text") or first.get("text")),
            "href": str_or_none(first.get("attr__href") or first.get("href")),
        }
    elif isinstance(chain := properties.get("$elements_chain"), str) and chain:
        element = _chain_element(chain.split(";", 1)[0])
    if not element.get("tag"):
        return {}
    selector = element["tag"] + (f"#{element['id']}" if element.get("id") else "")
    selector += "".join(f".{name}" for name in element.get("classes") or [])
    found = {"selector": selector, "tag": element["tag"], "text": element.get("text"), "href": element.get("href")}
    if found["text"] is None and isinstance(properties.get("$el_text"), str):
        found["text"] = properties["$el_text"]
    return {key: value for key, value in found.items() if value is not None}


def _chain_element(text: str) -> dict[str, Any]:
    """One element of an ``$elements_chain`` string: ``tag.class1.class2:key="value"key2="value2"``."""
    head, _, attributes = text.partition(":")
    tag, *classes = head.split(".")
    values: dict[str, str] = {}
    rest = attributes
    while "=" in rest:
        key, _, rest = rest.partition("=")
        if not rest.startswith('"'):
            break
        value, _, rest = rest[1:].partition('"')
        values[key] = value
    return {
        "tag": tag or None,
        "id": values.get("attr_id") or values.get("attr__id"),
        "classes": [name for name in classes if name],
        "text": values.get("text"),
        "href": values.get("href") or values.get("attr__href"),
    }


def _exception(properties: dict[str, Any]) -> dict[str, Any]:
    """``type``, ``message`` and ``stackTrace`` (one ``at function (file:line:column)`` line per
    frame, innermost last, as posthog-js lists them) of an ``$exception`` event."""
    listed = properties.get("$exception_list")
    if isinstance(listed, list) and listed and isinstance(listed[0], dict):
        first = listed[0]
        stack: dict[str, Any] = first["stacktrace"] if isinstance(first.get("stacktrace"), dict) else {}
        frames: list[Any] = stack["frames"] if isinstance(stack.get("frames"), list) else []
        lines = [
            f"    at {frame.get('function') or '<anonymous>'} "
            f"({frame.get('filename') or frame.get('abs_path') or '?'}:{frame.get('lineno')}:{frame.get('colno')})"
            for frame in frames
            if isinstance(frame, dict)
        ]
        kind, message = str_or_none(first.get("type")), str_or_none(first.get("value"))
        header = f"{kind or 'Error'}: {message or ''}"
        return {"type": kind, "message": message, "stackTrace": "\n".join([header, *reversed(lines)])}
    return {
        "type": str_or_none(properties.get("$exception_type")),
        "message": str_or_none(properties.get("$exception_message")),
        "stackTrace": str_or_none(properties.get("$exception_stack_trace_raw")),
    }


def read_posthog_fields(event: dict[str, Any], event_type: str) -> EventFields:
    """Read the typed fields of one PostHog bronze row's parsed ``payload`` (module docstring)."""
    properties = _properties(event)
    own = {key: value for key, value in properties.items() if not key.startswith("$") and key not in TOKEN_KEYS}
    name = event.get("event")
    if name in ("$identify", "$set"):
        own = {**_object(event, properties, "$set_once"), **_object(event, properties, "$set")}
    elif name == "$create_alias":
        own = {"previousId": str_or_none(properties.get("alias"))}
    elif name == "$groupidentify":
        own = {
            **_object(event, properties, "$group_set"),
            "groupType": properties.get("$group_type"),
            "groupId": properties.get("$group_key"),
        }
    elif name == "$autocapture":
        own = {**own, **_selector(properties)}
    elif name == "$exception":
        own = {**own, **{key: value for key, value in _exception(properties).items() if value is not None}}
    elif name == "$screen" and isinstance(properties.get("$screen_name"), str):
        own = {**own, "name": properties["$screen_name"]}
    context = {
        key: value
        for key, value in properties.items()
        if key.startswith("$") and key not in _COLUMN_PROPERTIES and key not in _CONTENT_PROPERTIES
    }
    context.update(_segment_context(properties))
    user_id, anonymous_id = _identity(event, properties)
    return EventFields(
        user_id=user_id,
        anonymous_id=anonymous_id,
        session_id=str_or_none(properties.get("$session_id")),
        page_url=str_or_none(properties.get("$current_url")),
        referrer=str_or_none(properties.get("$referrer")) if properties.get("$referrer") != "$direct" else None,
        location=None,
        context=json_text_or_none(context) if context else None,
        properties=own,
        client_timestamp=str_or_none(event.get("timestamp")),
    )


def _segment_context(properties: dict[str, Any]) -> dict[str, Any]:
    """The SDK, OS and app of PostHog's ``$lib``/``$lib_version``, ``$os``/``$os_version`` and
    ``$app_name``/``$app_version`` in Segment's context keys (``library``, ``os``, ``app``), which
    enrichment reads for the platform (``pipelines.enrichment.platform_from_context``)."""
    pairs = {"library": ("$lib", "$lib_version"), "os": ("$os", "$os_version"), "app": ("$app_name", "$app_version")}
    found: dict[str, Any] = {}
    for key, (name, version) in pairs.items():
        if isinstance(properties.get(name), str):
            found[key] = {"name": properties[name], "version": str_or_none(properties.get(version))}
    return found


def _object(event: dict[str, Any], properties: dict[str, Any], key: str) -> dict[str, Any]:
    """``event[key]`` (posthog-js puts ``$set`` at the top) or ``properties[key]``, when an object."""
    for holder in (event, properties):
        if isinstance(holder.get(key), dict):
            return dict(holder[key])
    return {}
