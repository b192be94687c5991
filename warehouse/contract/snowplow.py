"""The Snowplow tracker protocol: tracker events (name-value pairs) → bronze rows, and back.

Spec: Snowplow's tracker protocol
(https://docs.snowplow.io/docs/sources/trackers/snowplow-tracker-protocol/), as the JavaScript and
Python trackers send it: ``POST /com.snowplowanalytics.snowplow/tp2`` with a self-describing
``payload_data`` (``{"schema": "iglu:…/payload_data/…", "data": [events]}``, every value a
string) or ``GET /i?e=pv&…`` (one event in the query string). One tracker event is one event:

==========================  ======================  ============================================
``e``                       event_type              properties (silver)
==========================  ======================  ============================================
``pv`` page view            ``page_view``           ``title`` (``page``)
``pp`` page ping            ``scroll``              ``depth`` (% of the page seen: ``(pp_may +
                                                    viewport height) / document height``, when
                                                    ``vp``/``ds`` are sent), ``minX``…``maxY``
``se`` structured           ``se_ac`` in            ``category``, ``action``, ``label``,
                            snake_case              ``property``, ``value``
``ue`` self-describing      by its schema: see      the event's ``data`` and its ``schema`` URI
                            below
``tr`` / ``ti``             ``transaction`` /       the ``tr_*`` / ``ti_*`` fields, named
                            ``transaction_item``
==========================  ======================  ============================================

Self-describing events (``ue_pr`` JSON or ``ue_px`` base64url JSON) are named by their schema's
name: Snowplow's ``link_click`` is ``click`` (``selector`` from ``elementId``/``elementClasses``,
``href`` from ``targetUrl``), ``submit_form``/``change_form``/``focus_form`` are ``submit``/
``change``/``focus``, ``screen_view`` is ``screen_view``, ``application_error`` is ``error``
(``message``, ``type`` from ``exceptionName``, ``stackTrace``); any other schema is its name in
snake_case. The schema URI is kept in ``properties.schema``. Contexts (``co`` JSON, ``cx`` base64)
are kept in ``context.contexts``. Both base64 forms are decoded at the edge (bronze holds JSON).

Identity: ``uid`` is the user id, ``duid`` (the domain user id, a first-party cookie) the anonymous
id, ``sid`` (``domain_sessionid``) the session. ``url``/``refr`` are the page, ``aid`` the app,
``ua``/``ip`` override the request's. ``eid`` → ``event_id`` (the UUID itself, canonical, else
``uuid5(EVENT_ID_NAMESPACE, "snowplow/<eid>")``; required: trackers always send one).
Time, as Snowplow's enrichment derives it: ``ttm`` (the true timestamp) when sent; else ``dtm``
(device created, epoch ms) corrected by ``stm`` (device sent): ``received_at - (stm - dtm)``;
``dtm`` alone as sent; else the receive time.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from warehouse.contract.errors import StructuralError
from warehouse.contract.rows import (
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
from warehouse.contract.text import loads_lenient
from warehouse.contract.time import resolve_event_time

SNOWPLOW_FORMAT = "snowplow"

#: The POST path of the tracker protocol, and the pixel's GET path.
TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATH = "/i"
#: The collector's route templates, also under a write-key prefix (``ingest_api.api.routes.snowplow``).
SNOWPLOW_ROUTES = frozenset({TP2_PATH, PIXEL_PATH, "/{key}" + TP2_PATH, "/{key}" + PIXEL_PATH})

#: Self-describing event schemas (vendor/name) with an event type of the contract's.
_SCHEMA_EVENT_TYPES = {
    "com.snowplowanalytics.snowplow/link_click": "click",
    "com.snowplowanalytics.snowplow/submit_form": "submit",
    "com.snowplowanalytics.snowplow/change_form": "change",
    "com.snowplowanalytics.snowplow/focus_form": "focus",
    "com.snowplowanalytics.snowplow/screen_view": "screen_view",
    "com.snowplowanalytics.mobile/screen_view": "screen_view",
    "com.snowplowanalytics.snowplow/application_error": "error",
}
_FIXED_EVENT_TYPES = {"pv": "page_view", "pp": "scroll", "tr": "transaction", "ti": "transaction_item"}
#: Tracker version prefix (``tv``) → the SDK name recorded as ``context.library.name``.
_TRACKERS = {"js": "snowplow-javascript", "py": "snowplow-python", "ios": "snowplow-ios", "andr": "snowplow-android"}
_STRUCTURED = {"se_ca": "category", "se_ac": "action", "se_la": "label", "se_pr": "property", "se_va": "value"}
_TRANSACTION = {
    "tr_id": "orderId",
    "tr_tt": "total",
    "tr_af": "affiliation",
    "tr_tx": "tax",
    "tr_sh": "shipping",
    "tr_ci": "city",
    "tr_st": "state",
    "tr_co": "country",
    "tr_cu": "currency",
    "ti_id": "orderId",
    "ti_sk": "sku",
    "ti_nm": "name",
    "ti_ca": "category",
    "ti_pr": "price",
    "ti_qu": "quantity",
    "ti_cu": "currency",
}


def _decoded_json(event: dict[str, Any], plain: str, encoded: str) -> Any:
    """The JSON of ``event[plain]`` (JSON text) or ``event[encoded]`` (base64url of it, padding
    optional), parsed; ``None`` when neither is there.

    Raises:
        StructuralError: not base64 or not JSON (``field`` the parameter).
    """
    if isinstance(event.get(plain), str):
        text, field = event[plain].encode(), plain
    elif isinstance(event.get(encoded), str):
        field = encoded
        value = event[encoded].strip()
        try:
            text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise StructuralError(f"{encoded} is not base64url", encoded) from exc
    else:
        return None
    try:
        return loads_lenient(text)
    except ValueError as exc:  # orjson.JSONDecodeError included
        raise StructuralError(f"{field} is not JSON", field) from exc


def snowplow_event_id(eid: str) -> str:
    """``event_id`` for an ``eid``: the UUID itself (canonical form), else its uuid5."""
    try:
        return str(uuid.UUID(eid))
    except ValueError:
        return name_id(f"snowplow/{eid}")


def _schema_key(uri: Any) -> str | None:
    """``vendor/name`` of an Iglu URI (``iglu:vendor/name/format/version``), else ``None``."""
    if not isinstance(uri, str) or not uri.startswith("iglu:"):
        return None
    parts = uri[len("iglu:") :].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) == 4 and parts[0] and parts[1] else None


def snowplow_event_type(event: dict[str, Any], unstructured: Any) -> str:
    """The ``event_type`` of a tracker event (module table).

    Raises:
        StructuralError: no ``e``; a structured event without ``se_ac``; a self-describing one
            without a valid inner schema URI.
    """
    kind = event.get("e")
    if not isinstance(kind, str) or not kind.strip():
        raise StructuralError("e (the event type) is required", "e")
    if kind in _FIXED_EVENT_TYPES:
        return _FIXED_EVENT_TYPES[kind]
    if kind == "se":
        action = event.get("se_ac")
        if not isinstance(action, str) or not action.strip():
            raise StructuralError("se_ac (the action) is required for a structured event", "se_ac")
        return event_name(action)
    if kind == "ue":
        inner = unstructured.get("data") if isinstance(unstructured, dict) else None
        key = _schema_key(inner.get("schema") if isinstance(inner, dict) else None)
        if key is None:
            raise StructuralError("a self-describing event needs ue_pr or ue_px with an iglu: schema", "ue_pr")
        return _SCHEMA_EVENT_TYPES.get(key) or event_name(key.split("/")[1])
    return event_name(kind)


def tracker_event_row(event: Any, ctx: RequestContext) -> dict[str, Any]:
    """Turn one tracker event (name-value pairs) into its bronze ``raw_events`` row.

    The stored payload is the event with ``ue_px``/``cx`` replaced by their decoded JSON under
    ``ue_pr``/``co``.

    Raises:
        StructuralError: not an object, no ``eid`` or ``e``, a value that is not text or a number,
            broken base64 or JSON in ``ue_px``/``cx``, a bad ``ttm``/``dtm``/``stm``, or over
            ``ctx.max_event_bytes``.
    """
    if not isinstance(event, dict):
        raise StructuralError(f"a tracker event must be a JSON object, got {type(event).__name__}")
    eid = event.get("eid")
    if not isinstance(eid, str) or not eid.strip():
        raise StructuralError("eid (the event id) is required", "eid")
    unstructured = _decoded_json(event, "ue_pr", "ue_px")
    contexts = _decoded_json(event, "co", "cx")
    event_type = snowplow_event_type(event, unstructured)
    stored = {key: value for key, value in event.items() if key not in ("ue_px", "cx")}
    if unstructured is not None:
        stored["ue_pr"] = unstructured
    if contexts is not None:
        stored["co"] = contexts
    for key, value in stored.items():
        if (
            key not in ("ue_pr", "co")
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, str | int | float))
        ):
            raise StructuralError(f"{key} must be text", key)
    if event.get("ttm") is not None:
        time = resolve_event_time(event["ttm"], None, ctx.received_at)
    elif event.get("dtm") is not None:
        time = resolve_event_time(event["dtm"], event.get("stm"), ctx.received_at)
    else:
        time = resolve_event_time(ctx.received_at.isoformat(), None, ctx.received_at)
    text = dumps(stored)
    check_event_size(text, ctx.max_event_bytes)
    return bronze_row(
        event_id=snowplow_event_id(eid.strip()),
        event_type=event_type,
        app=nonblank_str(event.get("aid")) or DEFAULT_APP,
        ctx=ctx,
        time=time,
        user_agent=nonblank_str(event.get("ua")) or ctx.user_agent,
        ip=nonblank_str(event.get("ip")) or ctx.ip,
        payload=text,
    )


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _size(value: Any) -> tuple[float, float] | None:
    """``"1024x768"`` → ``(1024, 768)``."""
    if not isinstance(value, str) or "x" not in value:
        return None
    width, _, height = value.partition("x")
    w, h = _number(width), _number(height)
    return (w, h) if w is not None and h is not None else None


def _page_ping(event: dict[str, Any]) -> dict[str, Any]:
    """A page ping's offsets and, when the viewport and document sizes are sent, its depth (%)."""
    found: dict[str, Any] = {
        name: _number(event.get(key))
        for key, name in (("pp_mix", "minX"), ("pp_max", "maxX"), ("pp_miy", "minY"), ("pp_may", "maxY"))
        if _number(event.get(key)) is not None
    }
    viewport, document = _size(event.get("vp")), _size(event.get("ds"))
    if viewport and document and document[1] > 0 and "maxY" in found:
        found["depth"] = round(min(100.0, (found["maxY"] + viewport[1]) / document[1] * 100), 1)
    return found


def _self_describing(unstructured: Any) -> dict[str, Any]:
    """A self-describing event's data, its schema URI, and the contract's names for links and errors."""
    inner = unstructured.get("data") if isinstance(unstructured, dict) else None
    if not isinstance(inner, dict):
        return {}
    data: dict[str, Any] = inner["data"] if isinstance(inner.get("data"), dict) else {}
    found: dict[str, Any] = {**data, "schema": inner.get("schema")}
    key = _schema_key(inner.get("schema"))
    if key == "com.snowplowanalytics.snowplow/link_click":
        classes: list[Any] = data["elementClasses"] if isinstance(data.get("elementClasses"), list) else []
        element_id = nonblank_str(data.get("elementId"))
        found["selector"] = "a" + (f"#{element_id}" if element_id else "") + "".join(f".{c}" for c in classes)
        found["href"] = data.get("targetUrl")
    elif key == "com.snowplowanalytics.snowplow/application_error":
        found["type"] = data.get("exceptionName")
    return found


def read_snowplow_fields(event: dict[str, Any], event_type: str) -> EventFields:
    """Read the typed fields of one Snowplow bronze row's parsed ``payload`` (module docstring)."""
    kind = event.get("e")
    if kind == "se":
        properties: dict[str, Any] = {name: event[key] for key, name in _STRUCTURED.items() if key in event}
    elif kind == "pp":
        properties = _page_ping(event)
    elif kind == "ue":
        properties = _self_describing(event.get("ue_pr"))
    elif kind in ("tr", "ti"):
        properties = {name: event[key] for key, name in _TRANSACTION.items() if key in event}
    else:
        properties = {"title": event["page"]} if isinstance(event.get("page"), str) else {}
    context: dict[str, Any] = {}
    contexts = event.get("co")
    if isinstance(contexts, dict) and isinstance(contexts.get("data"), list):
        context["contexts"] = contexts["data"]
    tracker = event.get("tv")
    if isinstance(tracker, str) and "-" in tracker:
        prefix, _, version = tracker.partition("-")
        context["library"] = {"name": _TRACKERS.get(prefix, f"snowplow-{prefix}"), "version": version}
    for key, name in (("p", "platform"), ("tna", "namespace"), ("lang", "locale"), ("tz", "timezone")):
        if isinstance(event.get(key), str):
            context[name] = event[key]
    return EventFields(
        user_id=str_or_none(event.get("uid")),
        anonymous_id=str_or_none(event.get("duid")),
        session_id=str_or_none(event.get("sid")),
        page_url=str_or_none(event.get("url")),
        referrer=str_or_none(event.get("refr")),
        location=None,
        context=json_text_or_none(context) if context else None,
        properties=properties,
        client_timestamp=str_or_none(event.get("ttm") if event.get("ttm") is not None else event.get("dtm")),
    )
