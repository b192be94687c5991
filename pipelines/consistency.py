"""Consistency of an event across copies and of a property across batches.

Two facts a single row cannot show, computed per micro-batch as columns of the validation
frame so the expectation suite (not a parallel filter) quarantines them:

* ``duplicate_conflict``: the same ``event_id`` arrived with different client-sent content
  (ignoring ``sentAt`` and receipt metadata). The first copy received wins — the one already in
  silver, else the batch's first received — and every copy that differs from it conflicts.
* ``type_conflict``: a top-level property of an event type changed JSON type (``scroll``'s
  ``value`` 350, then ``"350px"``). The first type seen per (app, event_type, property) is kept
  in the ``property_types`` registry; a value of another type is never cast or nulled, the row
  is quarantined with the raw value intact. New properties are always accepted (the
  ``properties`` JSON column holds any key; old rows simply lack it).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from warehouse.tables import PROPERTY_TYPES

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
#: record separators): built in the per-row decode loop, split apart vectorized (a Polars list of
#: structs built from Python objects costs ~40 µs per row).
_UNIT, _RECORD = "\x1f", "\x1e"
_ESCAPES = str.maketrans({"%": "%25", _UNIT: "%1F", _RECORD: "%1E"})


def json_type(value: Any) -> str | None:
    """JSON Schema type name of a parsed JSON value (RFC 8259 kinds; ``None`` for null).

    Integers and floats are both ``"number"``: 3 then 3.5 is not a conflict.
    """
    if value is None:
        return None
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
    """An event's top-level properties and their JSON types, encoded for :func:`type_conflicts`.

    ``{"a": 1, "b": "x", "c": None}`` → ``"a\x1fnumber\x1eb\x1fstring"`` (nulls skipped; ``%`` and
    the separator characters inside keys are percent-escaped, so distinct keys stay distinct).
    """
    # Per bronze row in silver's decode loop: exact-type lookup first, escaping only when needed.
    parts = []
    for key, value in properties.items():
        kind = _EXACT_TYPES.get(type(value)) or json_type(value)
        if kind is not None:
            name = key if type(key) is str and not _NEEDS_ESCAPE.search(key) else escape_key(str(key))
            parts.append(f"{name}{_UNIT}{kind}")
    return _RECORD.join(parts)


_EXACT_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array", dict: "object"}
_NEEDS_ESCAPE = re.compile(f"[%{_UNIT}{_RECORD}]")


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


def content_hash(decoded: pl.DataFrame) -> pl.Series:
    """BLAKE2b-128 hex digest of each row's :data:`CONTENT_COLUMNS` (stable across versions).

    ``decoded`` must hold the content columns, JSON ones as text with sorted keys and
    ``properties`` with :func:`canonical_numbers`.
    """
    parts = [pl.col(c).fill_null("\x00") for c in CONTENT_COLUMNS]
    joined = decoded.select(pl.concat_str(parts, separator="\x1f")).to_series()
    return pl.Series(
        "content_hash",
        [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in joined],
        dtype=pl.String,
    )


def duplicate_conflicts(decoded: pl.DataFrame, prior: pl.DataFrame) -> pl.Series:
    """Per row of ``decoded`` (order kept): does its content differ from the winning copy's?

    Args:
        decoded: batch rows with ``event_id``, ``content_hash``, ``received_at``, ``bronze_version``.
        prior: ``(event_id, content_hash)`` of copies already kept in silver (hash may be null for
            rows written before hashes existed; those never conflict).
    """
    rows = decoded.select("event_id", "content_hash", "received_at", "bronze_version").with_row_index("_row")
    first_in_batch = (
        rows.sort("received_at", "bronze_version")
        .unique("event_id", keep="first", maintain_order=True)
        .select("event_id", pl.col("content_hash").alias("_batch_first"))
    )
    kept = prior.select("event_id", pl.col("content_hash").alias("_kept")).unique("event_id")
    winner = (
        rows.join(first_in_batch, on="event_id", how="left")
        .join(kept, on="event_id", how="left")
        .with_columns(
            pl.when(pl.col("event_id").is_in(kept["event_id"].implode()))
            .then(pl.col("_kept"))
            .otherwise(pl.col("_batch_first"))
            .alias("_winner")
        )
        .sort("_row")
    )
    conflict = winner["_winner"].is_not_null() & (winner["content_hash"] != winner["_winner"])
    return conflict.fill_null(False).alias("duplicate_conflict")


def type_conflicts(decoded: pl.DataFrame, known: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """Per row, the first property whose JSON type no registry row accepts; new types.

    A property may have several accepted types (one registry row each: the first seen, plus any
    an operator accepted with ``eventlake-types accept``).

    Args:
        decoded: batch rows with ``app``, ``event_type``, ``received_at``, ``bronze_version`` and
            ``property_types`` (:func:`property_types`' encoding).
        known: the registry, ``(app, event_type, property, json_type)``.

    Returns:
        ``type_conflict``: text such as ``"value: number, got string"`` (accepted types joined by
        ``|``) or null, in row order;
        and the first-seen ``(app, event_type, property, json_type, first_seen_at, bronze_version)``
        of the properties the registry lacks, to register.
    """
    keys = ["app", "event_type", "property"]
    seen = (
        decoded.select("app", "event_type", "received_at", "bronze_version", "property_types")
        .with_row_index("_row")
        .filter(pl.col("property_types") != "")
        .with_columns(pl.col("property_types").str.split(_RECORD))
        .explode("property_types")
        .with_columns(
            pl.col("property_types").str.split_exact(_UNIT, 1).struct.rename_fields(["property", "json_type"])
        )
        .unnest("property_types")
    )
    new = (
        seen.join(known.select(keys), on=keys, how="anti")
        .sort("received_at", "bronze_version", "_row")
        .unique(keys, keep="first", maintain_order=True)
        .select(*keys, "json_type", pl.col("received_at").alias("first_seen_at"), "bronze_version")
    )
    registered = pl.concat([known.select(*keys, "json_type"), new.select(*keys, "json_type")]).unique()
    accepted = registered.group_by(keys).agg(pl.col("json_type").sort().str.join("|").alias("_accepted"))
    conflicts = (
        seen.join(registered, on=[*keys, "json_type"], how="anti")  # a type no registry row accepts
        .join(accepted, on=keys, how="inner")
        .sort("_row", "property")
        .group_by("_row", maintain_order=True)
        .agg(pl.format("{}: {}, got {}", "property", "_accepted", "json_type").first().alias("type_conflict"))
    )
    flagged = (
        pl.DataFrame({"_row": pl.arange(0, decoded.height, eager=True, dtype=pl.UInt32)})
        .join(conflicts, on="_row", how="left")
        .sort("_row")["type_conflict"]
    )
    return flagged.cast(pl.String).alias("type_conflict"), new


def registry_rows(new: pl.DataFrame, run_id: str, now: datetime) -> pa.Table:
    """New registry entries (``type_conflicts``' second result) as ``property_types`` rows."""
    rows = new.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("registered_at"))
    return rows.select(PROPERTY_TYPES.schema.names).to_arrow().cast(PROPERTY_TYPES.schema)
