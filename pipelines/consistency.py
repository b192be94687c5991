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

from datetime import datetime

import polars as pl
import pyarrow as pa

from pipelines.decoding import RECORD, UNIT
from warehouse.lake.tables import PROPERTY_TYPES


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
        .with_columns(pl.col("property_types").str.split(RECORD))
        .explode("property_types")
        .with_columns(pl.col("property_types").str.split_exact(UNIT, 1).struct.rename_fields(["property", "json_type"]))
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
