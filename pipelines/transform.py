"""Pure transformations from a bronze micro-batch to silver and quarantine rows (Polars).

Flow: :func:`decode` (payload JSON → typed fields) → :func:`validation_frame` (what the
expectation suite looks at) → split by ``pipelines.validation`` → :func:`dedup_first_received`
→ :func:`build_silver` (scrub + enrich) / :func:`build_quarantine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

import orjson
import pandas as pd
import polars as pl
import pyarrow as pa

from pipelines.enrichment import Device, device_from_user_agent
from pipelines.scrubbing import Scrubber, truncate_ip
from pipelines.validation import SplitResult
from warehouse.formats import read_event_fields
from warehouse.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

_DEVICE_SCHEMA = pl.Struct({f.name: pl.Boolean if f.type == "bool" else pl.String for f in fields(Device)})


def decode(changes: pa.Table) -> pl.DataFrame:
    """Bronze rows (plus ``_commit_version``) → frame with the payload's typed fields.

    Adds ``user_id``, ``anonymous_id``, ``session_id``, ``page_url``, ``referrer``, ``location``,
    ``context`` and ``properties`` (JSON text) and ``bronze_version`` (the commit that holds the
    row), read according to each row's ``source_format``.
    """
    frame = pl.from_arrow(changes)
    assert isinstance(frame, pl.DataFrame)
    fields = [
        read_event_fields(p, t, f)
        for p, t, f in zip(frame["payload"], frame["event_type"], frame["source_format"], strict=True)
    ]
    return frame.rename({"_commit_version": "bronze_version"}).with_columns(
        pl.Series("user_id", [f.user_id for f in fields], dtype=pl.String),
        pl.Series("anonymous_id", [f.anonymous_id for f in fields], dtype=pl.String),
        pl.Series("context", [f.context for f in fields], dtype=pl.String),
        pl.Series("session_id", [f.session_id for f in fields], dtype=pl.String),
        pl.Series("page_url", [f.page_url for f in fields], dtype=pl.String),
        pl.Series("referrer", [f.referrer for f in fields], dtype=pl.String),
        pl.Series("location", [f.location for f in fields], dtype=pl.String),
        pl.Series("properties", [orjson.dumps(f.properties).decode() for f in fields], dtype=pl.String),
    )


def validation_frame(decoded: pl.DataFrame) -> pd.DataFrame:
    """The columns ``expectations/raw_events.json`` checks, as a pandas frame (GE input).

    ``timestamp_ms``: client timestamp in epoch ms (UTC). ``future_skew_ms``: timestamp minus
    received_at in ms. ``person_key``: user id, else anonymous id, else session id.
    """
    return decoded.select(
        "event_id",
        "event_type",
        pl.col("timestamp").dt.epoch("ms").alias("timestamp_ms"),
        (pl.col("timestamp") - pl.col("received_at")).dt.total_milliseconds().alias("future_skew_ms"),
        pl.coalesce("user_id", "anonymous_id", "session_id").alias("person_key"),
    ).to_pandas()


def dedup_first_received(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep one row per ``event_id``: the first received (ties: the earliest bronze commit)."""
    return frame.sort("received_at", "bronze_version").unique("event_id", keep="first", maintain_order=True)


def apply_split(
    decoded: pl.DataFrame, split: SplitResult
) -> tuple[pl.DataFrame, pl.DataFrame, list[list[dict[str, Any]]]]:
    """Rows of ``decoded`` by the validation result: ``(valid, invalid, reasons)``.

    Both sides are deduplicated by event_id (first received wins); ``reasons[i]`` lists the
    failed checks of ``invalid``'s i-th row.
    """
    valid = dedup_first_received(decoded.filter(pl.Series(split.valid)))
    positions = sorted(split.failures)
    invalid = dedup_first_received(
        decoded[positions].with_columns(pl.Series("_position", positions, dtype=pl.Int64))
        if positions
        else decoded.clear().with_columns(pl.lit(None, pl.Int64).alias("_position"))
    )
    reasons = [split.failures[p] for p in invalid["_position"].to_list()]
    return valid, invalid.drop("_position"), reasons


def _map_distinct(column: pl.Series, fn: Callable[[Any], str | None]) -> pl.Series:
    # Applying Python rules once per distinct value: URLs, user agents and IPs repeat a lot.
    distinct = column.unique().drop_nulls()
    mapping = dict(zip(distinct.to_list(), (fn(v) for v in distinct.to_list()), strict=True))
    return column.replace_strict(mapping, default=None, return_dtype=pl.String)


def build_silver(valid: pl.DataFrame, run_id: str, scrubber: Scrubber | None = None) -> pa.Table:
    """Scrub and enrich validated, deduplicated rows into the silver ``events`` schema.

    ``scrubber`` (default: the repository's rules) applies the scrub rules and counts what each
    masked; distinct URLs, IPs, locations and SDK contexts are scrubbed once each.
    """
    scrubber = scrubber or Scrubber()

    def scrub_json(text: str) -> str:
        return orjson.dumps(scrubber.value(orjson.loads(text))).decode()

    devices = (
        valid.select("user_agent")
        .unique()
        .with_columns(
            pl.col("user_agent")
            .map_elements(
                lambda ua: asdict(device_from_user_agent(ua)),
                return_dtype=_DEVICE_SCHEMA,
                skip_nulls=False,
            )
            .alias("device")
        )
        .unnest("device")
    )
    silver = valid.join(devices, on="user_agent", how="left", nulls_equal=True).with_columns(
        pl.col("timestamp").dt.date().alias("event_date"),
        _map_distinct(valid["page_url"], scrubber.url).alias("page_url"),
        _map_distinct(valid["referrer"], scrubber.url).alias("referrer"),
        _map_distinct(valid["location"], scrubber.text).alias("location"),
        _map_distinct(valid["context"], scrub_json).alias("context"),
        _map_distinct(valid["ip"], truncate_ip).alias("ip"),
        pl.col("properties").map_elements(scrub_json, return_dtype=pl.String),
        pl.lit(run_id).alias("run_id"),
    )
    return silver.select(EVENTS.schema.names).to_arrow().cast(EVENTS.schema)


def build_quarantine(
    invalid: pl.DataFrame, reasons: list[list[dict[str, Any]]], suite: str, run_id: str, now: datetime
) -> pa.Table:
    """Invalid rows as ``rejected_events``: the original bronze row plus why and by whom.

    ``reasons[i]`` lists the failed checks of ``invalid``'s i-th row (at least one).
    """
    quarantine = invalid.select(*RAW_EVENTS.schema.names, "bronze_version").with_columns(
        pl.lit(suite).alias("suite"),
        pl.Series("failed_expectations", [orjson.dumps(r).decode() for r in reasons], dtype=pl.String),
        pl.Series("reason", [r[0]["check"] for r in reasons], dtype=pl.String),
        pl.Series("reason_type", [r[0]["reason"] for r in reasons], dtype=pl.String),
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("quarantined_at"),
    )
    return quarantine.select(REJECTED_EVENTS.schema.names).to_arrow().cast(REJECTED_EVENTS.schema)
