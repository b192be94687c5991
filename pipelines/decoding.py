"""Per-row decode of bronze payloads: the typed fields silver reads, and the content hash.

The one place the silver step walks every row in Python (besides scrubbing properties), so
each row's work is kept small: exact-type lookups, one parse and one sorted dump per payload.
Every parsed payload dies with its row: keeping them alive made Python's cyclic GC rescan all
earlier rows (measured 4x slower on 100k rows).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any

import orjson
import polars as pl

from warehouse.contract.formats import read_event_fields

#: The client-sent fields that make up an event's content (``sentAt``, ``received_at``, IP and the
#: request's User-Agent header are receipt metadata and may differ between retries; so is the
#: receive time that stands in for a timestamp the client did not send).
CONTENT_COLUMNS = (
    "event_type",
    "client_timestamp",
    "user_id",
    "anonymous_id",
    "session_id",
    "page_url",
    "referrer",
    "location",
    "context",
    "properties",
)

#: ``property_types`` is one string per row, ``key\x1ftype`` pairs joined by ``\x1e`` (ASCII unit and
#: record separators): built here, split apart vectorized by ``pipelines.consistency`` (a Polars
#: list of structs built from Python objects costs ~40 µs per row).
UNIT, RECORD = "\x1f", "\x1e"
_ESCAPES = str.maketrans({"%": "%25", UNIT: "%1F", RECORD: "%1E"})
_NEEDS_ESCAPE = re.compile(f"[%{UNIT}{RECORD}]")
_EXACT_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array", dict: "object"}

#: Scroll depth conventions (documented in docs/ingest.md): ``{"depth_pct": 0..100}`` is percent of
#: the page, ``{"depth_px": n}`` pixels, and a bare number (``"scroll": 80``, read as ``value``) a
#: depth in either unit; all must be numbers, percent at most 100, none negative.
SCROLL_EVENT = "scroll"
_SCROLL_FIELDS = ("value", "depth_pct", "depth_px")

#: What :func:`decode_fields` returns, column by column.
DECODED_SCHEMA = pl.Schema(
    {
        "user_id": pl.String(),
        "anonymous_id": pl.String(),
        "context": pl.String(),
        "session_id": pl.String(),
        "page_url": pl.String(),
        "referrer": pl.String(),
        "location": pl.String(),
        "client_timestamp": pl.String(),
        "properties": pl.String(),
        "property_types": pl.String(),
        "scroll_pct": pl.Float64(),
        "scroll_depth": pl.Float64(),
        "scroll_type": pl.String(),
        "content_hash": pl.String(),
    }
)


def json_type(value: Any) -> str | None:
    """JSON Schema type name of a parsed JSON value (RFC 8259 kinds; ``None`` for null).

    Integers and floats are both ``"number"``: 3 then 3.5 is not a conflict.
    """
    exact = _EXACT_TYPES.get(type(value))  # what orjson returns: one lookup per value
    if exact is not None or value is None:
        return exact
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def escape_key(key: str) -> str:
    """A property name as the registry stores it: ``%``, U+001E and U+001F percent-escaped."""
    return key.translate(_ESCAPES)


def property_types(properties: dict[str, Any]) -> str:
    """An event's top-level properties and their JSON types, encoded for the type registry.

    ``{"a": 1, "b": "x", "c": None}`` → ``"a\\x1fnumber\\x1eb\\x1fstring"`` (nulls skipped; ``%`` and
    the separator characters inside keys are percent-escaped, so distinct keys stay distinct).
    """
    parts = []
    for key, value in properties.items():
        kind = json_type(value)
        if kind is not None:
            name = key if type(key) is str and not _NEEDS_ESCAPE.search(key) else escape_key(str(key))
            parts.append(f"{name}{UNIT}{kind}")
    return RECORD.join(parts)


#: How orjson spells a float that is integral (``10.0``, ``-0.0``, ``1e+16``): only texts with one
#: of these (or a string that looks like it) are walked.
_NUMBER_SPELLINGS = re.compile(r"[0-9]\.0(?![0-9])|[0-9]e")


def canonical_numbers(value: Any, text: str) -> str:
    """``text`` (the sorted-keys JSON of ``value``) with each number in one spelling.

    JSON numbers are values, not spellings (RFC 8259 §6): ``10.0``, ``1e1`` and ``10`` are one
    number, ``-0.0`` is ``0``. Integral floats up to 2**53 become integers, so a retry that
    re-encodes a number is not a conflict, and strings are never touched. Only texts where orjson
    spelled an integral float (``.0`` then no digit, or an exponent) are walked.
    """
    if _NUMBER_SPELLINGS.search(text) is None:
        return text
    return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS).decode()


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def content_hash(content: Iterable[str | None]) -> str:
    """BLAKE2b-128 hex digest of one row's :data:`CONTENT_COLUMNS` values, in that order (stable
    across versions: nulls as U+0000, values joined by U+001F). JSON values must be text with
    sorted keys, ``properties`` with :func:`canonical_numbers`."""
    joined = UNIT.join(["\x00" if value is None else value for value in content])  # a list: faster per row
    return blake2b(joined.encode(), digest_size=16).hexdigest()


def _number(value: Any) -> float | None:
    return float(value) if json_type(value) == "number" else None


def _scroll(event_type: str, properties: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    """``(depth_pct, depth in px or bare value, JSON type of the depth fields)`` of a scroll event."""
    if event_type != SCROLL_EVENT:
        return None, None, None
    kinds = [json_type(properties[f]) for f in _SCROLL_FIELDS if properties.get(f) is not None]
    kind = next((k for k in kinds if k != "number"), "number" if kinds else None)
    depth = _number(properties.get("depth_px"))
    return _number(properties.get("depth_pct")), _number(properties.get("value")) if depth is None else depth, kind


def _decode_row(payload: str, event_type: str, source_format: str) -> tuple[Any, ...]:
    f = read_event_fields(payload, event_type, source_format)
    props = f.properties
    properties = canonical_numbers(props, orjson.dumps(props, option=orjson.OPT_SORT_KEYS).decode())
    digest = content_hash(
        (
            event_type,
            f.client_timestamp,
            f.user_id,
            f.anonymous_id,
            f.session_id,
            f.page_url,
            f.referrer,
            f.location,
            f.context,
            properties,
        )
    )
    return (
        f.user_id,
        f.anonymous_id,
        f.context,
        f.session_id,
        f.page_url,
        f.referrer,
        f.location,
        f.client_timestamp,
        properties,
        property_types(props),
        *_scroll(event_type, props),
        digest,
    )


def decode_fields(rows: pl.DataFrame) -> pl.DataFrame:
    """Bronze rows (``payload``, ``event_type``, ``source_format``) → :data:`DECODED_SCHEMA` columns,
    row for row, read according to each row's ``source_format``.

    ``properties`` is JSON text with sorted keys and canonical numbers; ``property_types`` the
    top-level JSON types (:func:`property_types`); the scroll columns are set for scroll events
    only; ``content_hash`` is :func:`content_hash` of the row's :data:`CONTENT_COLUMNS`.

    Raises:
        orjson.JSONDecodeError: a payload is not JSON (a corrupted bronze row).
        KeyError: an unknown ``source_format``.
    """
    decoded = [
        _decode_row(payload, event_type, source_format)
        for payload, event_type, source_format in zip(
            rows["payload"], rows["event_type"], rows["source_format"], strict=True
        )
    ]
    return pl.DataFrame(decoded, schema=DECODED_SCHEMA, orient="row")
