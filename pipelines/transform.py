"""Pure transformations from a bronze micro-batch to silver and quarantine rows (Polars).

Flow: :func:`decode` (payload JSON → typed fields) → :func:`validation_frame` (what the
expectation suite looks at) → split by ``pipelines.validation`` → :func:`dedup_first_received`
→ :func:`build_silver` (scrub + enrich) / :func:`build_quarantine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime
from functools import partial
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from pipelines.consistency import duplicate_conflicts, type_conflicts
from pipelines.decoding import decode_fields
from pipelines.enrichment import Device, device_from_user_agent, is_asset_request, platform_from_context
from pipelines.geo import IP_SOURCE, LOCATION_SOURCE, countries_of_networks, country_from_location
from pipelines.parallel import RowPool
from pipelines.pseudonyms import PERSONAL_ID_COLUMNS, Pseudonymizer
from pipelines.scrubbing import MASKED_COLUMN, Scrubber, masked_counts, scrub_json_texts
from pipelines.sensitive_values import truncate_ip
from pipelines.validation import SplitResult
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

_DEVICE_SCHEMA = pl.Struct({f.name: pl.Boolean if f.type == "bool" else pl.String for f in fields(Device)})


def decode(changes: pa.Table, pool: RowPool | None = None) -> pl.DataFrame:
    """Bronze rows (plus ``_commit_version``) → frame with the payload's typed fields.

    Adds :data:`pipelines.decoding.DECODED_SCHEMA`'s columns (see
    :func:`pipelines.decoding.decode_fields`), ``payload_bytes`` (UTF-8 size of the payload) and
    ``bronze_version`` (the commit that holds the row). ``pool`` spreads the per-row decode over
    worker processes or a Ray cluster (the same rows, in the same order).
    """
    frame = pl.from_arrow(changes)
    assert isinstance(frame, pl.DataFrame)
    rows = frame.select("payload", "event_type", "source_format")
    fields = pool.map(decode_fields, rows) if pool is not None else decode_fields(rows)
    return pl.concat([frame.rename({"_commit_version": "bronze_version"}), fields], how="horizontal").with_columns(
        pl.col("payload").str.len_bytes().cast(pl.Int64).alias("payload_bytes")
    )


def validation_frame(decoded: pl.DataFrame) -> pl.DataFrame:
    """The columns ``expectations/raw_events.json`` checks (the input of
    :func:`pipelines.validation.failed_checks`).

    ``timestamp_ms``: client timestamp in epoch ms (UTC). ``future_skew_ms``: timestamp minus
    received_at in ms. ``person_key``: user id, else anonymous id, else session id. Ids, URLs,
    ``payload_bytes`` and the scroll columns as decoded; ``duplicate_conflict`` and
    ``type_conflict`` as set by :func:`with_consistency`.
    """
    return decoded.select(
        "event_id",
        "event_type",
        pl.col("timestamp").dt.epoch("ms").alias("timestamp_ms"),
        (pl.col("timestamp") - pl.col("received_at")).dt.total_milliseconds().alias("future_skew_ms"),
        pl.coalesce("user_id", "anonymous_id", "session_id").alias("person_key"),
        "user_id",
        "anonymous_id",
        "session_id",
        "page_url",
        "referrer",
        "payload_bytes",
        "scroll_pct",
        "scroll_depth",
        "scroll_type",
        "duplicate_conflict",
        "type_conflict",
    )


def with_consistency(
    decoded: pl.DataFrame, prior_hashes: pl.DataFrame, known_types: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add ``duplicate_conflict`` and ``type_conflict`` (see :mod:`pipelines.consistency`).

    Returns the frame and the properties to register (first seen in this batch).
    """
    conflicts, new_types = type_conflicts(decoded, known_types)
    return decoded.with_columns(duplicate_conflicts(decoded, prior_hashes), conflicts), new_types


def dedup_first_received(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep one row per ``event_id``: the first received (ties: the earliest bronze commit)."""
    return frame.sort("received_at", "bronze_version").unique("event_id", keep="first", maintain_order=True)


def apply_split(
    decoded: pl.DataFrame, split: SplitResult
) -> tuple[pl.DataFrame, pl.DataFrame, list[list[dict[str, Any]]]]:
    """Rows of ``decoded`` by the validation result: ``(valid, invalid, reasons)``.

    Both sides are deduplicated by event_id (first received wins); ``reasons[i]`` lists the
    failed checks of ``invalid``'s i-th row (a type conflict's entry adds ``detail``, e.g.
    ``"value: number, got string"``).
    """
    valid = dedup_first_received(decoded.filter(pl.Series(split.valid)))
    positions = sorted(split.failures)
    invalid = dedup_first_received(
        decoded[positions].with_columns(pl.Series("_position", positions, dtype=pl.Int64))
        if positions
        else decoded.clear().with_columns(pl.lit(None, pl.Int64).alias("_position"))
    )
    reasons = [split.failures[p] for p in invalid["_position"].to_list()]
    if "type_conflict" in invalid.columns:  # say which property changed type, and how
        reasons = [
            [{**r, "detail": detail} if r["column"] == "type_conflict" else r for r in row]
            for row, detail in zip(reasons, invalid["type_conflict"].to_list(), strict=True)
        ]
    return valid, invalid.drop("_position"), reasons


def _map_distinct(column: pl.Series, fn: Callable[[Any], str | None]) -> pl.Series:
    # Applying Python rules once per distinct value: URLs, user agents and IPs repeat a lot.
    distinct = column.unique().drop_nulls()
    mapping = dict(zip(distinct.to_list(), (fn(v) for v in distinct.to_list()), strict=True))
    return column.replace_strict(mapping, default=None, return_dtype=pl.String)


#: Silver's client-sent or client-derived text, by how the scrub rules apply to it. Identifiers
#: (event_id, user_id, anonymous_id, session_id) are pseudonymized instead when a rule matches them;
#: ``app`` and ``source`` are the operator's names for a product and a write key; the rest is lineage.
URL_COLUMNS = ("page_url", "referrer")
JSON_COLUMNS = ("context",)
TEXT_COLUMNS = (
    "event_type",
    "location",
    "user_agent",
    "browser_family",
    "browser_version",
    "os_family",
    "os_version",
    "device_family",
    "device_type",
    "platform",
    "country",
)
#: The quarantine's raw text the rules marked ``quarantine: true`` apply to (full IPs).
QUARANTINE_TEXT_COLUMNS = ("ip", "user_agent", "payload")


def scrub_silver_columns(frame: pl.DataFrame, scrubber: Scrubber, pool: RowPool | None = None) -> pl.DataFrame:
    """``frame`` (silver columns) with the scrub rules applied to every free-text column.

    URLs by :meth:`Scrubber.url`, JSON by :meth:`Scrubber.json_text` (``properties`` row by row,
    spread over ``pool``'s processes or Ray cluster when given), the other text columns by
    :meth:`Scrubber.text`, each distinct value once; ``ip`` truncated to its network
    (:func:`pipelines.sensitive_values.truncate_ip`, ``None`` when it is not an address). Idempotent: the
    rescrub (:mod:`pipelines.rescrub`) applies it again to rows already in silver.

    Raises:
        orjson.JSONDecodeError: a ``properties`` or ``context`` value is not JSON.
    """
    texts = frame.select("properties")
    scrubbed = (
        pool.map(scrub_json_texts, texts, scrubber.rules)
        if pool is not None
        else scrub_json_texts(texts, scrubber.rules)
    )
    scrubber.counts.update(masked_counts(scrubbed[MASKED_COLUMN]))
    return frame.with_columns(
        scrubbed["properties"],
        *(_map_distinct(frame[column], scrubber.url).alias(column) for column in URL_COLUMNS),
        *(_map_distinct(frame[column], scrubber.json_text).alias(column) for column in JSON_COLUMNS),
        *(_map_distinct(frame[column], scrubber.text).alias(column) for column in TEXT_COLUMNS),
        _map_distinct(frame["ip"], truncate_ip).alias("ip"),
    )


def scrub_quarantine_columns(frame: pl.DataFrame, scrubber: Scrubber) -> pl.DataFrame:
    """``frame`` (quarantine columns) with the rules marked ``quarantine: true`` applied to its raw
    text (:data:`QUARANTINE_TEXT_COLUMNS`, :meth:`Scrubber.quarantine_text`); idempotent."""
    return frame.with_columns(
        _map_distinct(frame[column], scrubber.quarantine_text).alias(column) for column in QUARANTINE_TEXT_COLUMNS
    )


def build_silver(
    valid: pl.DataFrame,
    run_id: str,
    scrubber: Scrubber | None = None,
    pseudonymizer: Pseudonymizer | None = None,
    pool: RowPool | None = None,
) -> pa.Table:
    """Scrub and enrich validated, deduplicated rows into the silver ``events`` schema.

    ``scrubber`` (default: the repository's rules) applies the scrub rules to every free-text
    column (:func:`scrub_silver_columns`) and counts what each masked.
    ``pseudonymizer`` replaces identifiers holding personal data by their HMAC pseudonym
    (without one, such identifiers are kept: only tests and benchmarks pass none).
    ``pool`` spreads the per-row property scrub over worker processes or a Ray cluster, and on Ray
    the enrichment too (the same result).
    Device, platform, country and the asset flag come from :func:`enrich_fields`, read before
    scrubbing; the values they give are scrubbed too.
    """
    scrubber = scrubber or Scrubber()
    clients = valid.select(*CLIENT_COLUMNS[:-1], content_type_of(pl.col("properties")))
    fields = pool.map(enrich_fields, clients, host_workers=False) if pool is not None else enrich_fields(clients)
    enriched = pl.concat([valid, fields], how="horizontal").with_columns(
        pl.col("timestamp").dt.date().alias("event_date"), pl.lit(run_id).alias("run_id")
    )
    silver = scrub_silver_columns(enriched, scrubber, pool)
    if pseudonymizer is not None:
        silver = pseudonymize_columns(silver, pseudonymizer)
    return silver.select(EVENTS.schema.names).to_arrow().cast(EVENTS.schema)


#: What :func:`enrich_fields` reads of each row (``content_type``: :func:`content_type_of` its properties).
CLIENT_COLUMNS = ("user_agent", "context", "location", "ip", "event_type", "page_url", "content_type")
#: The silver columns derived from others of the same row that a backfill fills in rows written
#: before they existed (:func:`backfill_derived`).
BACKFILLED_COLUMNS = ("is_asset", "country", "country_source")


def content_type_of(properties: pl.Expr) -> pl.Expr:
    """The ``content_type`` property (a response's media type, e.g. sent by a server-side tracker)
    of each row's properties JSON text, or null; named ``content_type``."""
    has_key = properties.str.contains('"content_type"', literal=True)
    return pl.when(has_key).then(properties.str.json_path_match("$.content_type")).alias("content_type")


def asset_flags(event_type: pl.Series, page_url: pl.Series, content_type: pl.Series, context: pl.Series) -> pl.Series:
    """``is_asset`` per row: a ``page_view`` that requested a static file
    (:func:`pipelines.enrichment.is_asset_request`, once per distinct URL, content type and
    whether the SDK ``context`` names a tracking library: ``library`` in it); ``False`` for every
    other event type."""
    pages = pl.DataFrame(
        [
            event_type.alias("event_type"),
            page_url.alias("page_url"),
            content_type.alias("content_type"),
            context.str.contains('"library"', literal=True).fill_null(False).alias("by_sdk"),
        ]
    )
    keys = ["page_url", "content_type", "by_sdk"]
    distinct = pages.select(keys).unique()
    distinct = distinct.with_columns(
        pl.Series("is_asset", [is_asset_request(*row) for row in distinct.iter_rows()], dtype=pl.Boolean)
    )
    flags = pages.join(distinct, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return (
        flags.select((pl.col("event_type") == "page_view").fill_null(False) & pl.col("is_asset"))
        .to_series()
        .alias("is_asset")
    )


def country_columns(location_country: pl.Series, ip: pl.Series, platform: pl.Series) -> tuple[pl.Series, pl.Series]:
    """``(country, country_source)`` per row, by :mod:`pipelines.geo`'s precedence: the client-sent
    location's country (``location_country``) when it names one, else the country of the row's
    network (``ip``, truncated here first: :func:`pipelines.sensitive_values.truncate_ip`, so a
    full and a truncated address agree), each distinct network once — but not for a ``server``
    ``platform``, whose address is most likely its data centre's (a server-side SDK's request; the
    API records the peer when the payload sends no ``ip``). The source is
    :data:`pipelines.geo.LOCATION_SOURCE` or :data:`pipelines.geo.IP_SOURCE`, null with no country."""
    networks = _map_distinct(ip, truncate_ip)
    distinct = networks.unique().drop_nulls().to_list()
    mapping = dict(zip(distinct, countries_of_networks(distinct), strict=True))
    located = networks.replace_strict(mapping, default=None, return_dtype=pl.String)
    by_ip = pl.select(pl.when(platform.fill_null("") != "server").then(located).alias("by_ip"))["by_ip"]
    source = (
        pl.when(location_country.is_not_null())
        .then(pl.lit(LOCATION_SOURCE))
        .when(by_ip.is_not_null())
        .then(pl.lit(IP_SOURCE))
    )
    both = pl.select(pl.coalesce(location_country, by_ip).alias("country"), source.alias("country_source"))
    return both["country"], both["country_source"]


def enrich_fields(clients: pl.DataFrame) -> pl.DataFrame:
    """A per-row stage (:mod:`pipelines.parallel`): what each row's :data:`CLIENT_COLUMNS` say
    about its client and request, each distinct value once.

    Returns :class:`pipelines.enrichment.Device`'s columns, with ``platform`` the SDK context's
    word first (:func:`pipelines.enrichment.platform_from_context`) and the user agent's otherwise;
    ``is_asset`` (:func:`asset_flags`); ``country`` and ``country_source``
    (:func:`country_columns` of :func:`pipelines.geo.country_from_location` and ``ip``), for the
    same rows in order.
    """
    devices = (
        clients.select("user_agent")
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
    joined = clients.select("user_agent").join(
        devices, on="user_agent", how="left", nulls_equal=True, maintain_order="left"
    )
    platform = joined.select(
        pl.coalesce(_map_distinct(clients["context"], platform_from_context), pl.col("platform")).alias("platform")
    )["platform"]
    location_country = _map_distinct(clients["location"], country_from_location)
    country, source = country_columns(location_country, clients["ip"], platform)
    return joined.select(
        *(name for name in _DEVICE_SCHEMA.to_schema() if name != "platform"),
        platform,
        asset_flags(clients["event_type"], clients["page_url"], clients["content_type"], clients["context"]),
        country,
        source,
    )


def backfill_derived(silver: pl.DataFrame) -> pl.DataFrame:
    """Silver rows with :data:`BACKFILLED_COLUMNS` filled from the row itself where a release
    before them left them null (silver only: bronze for old days may be gone); idempotent, and
    rows written since keep their values.

    ``is_asset`` is :func:`asset_flags` of the scrubbed URL, properties and context. A row without
    ``country_source`` got its ``country`` from its location only, so that value stays as the
    location's, and :func:`country_columns` adds the network's where there is none.
    """
    content_type = silver.select(content_type_of(pl.col("properties")))["content_type"]
    flags = asset_flags(silver["event_type"], silver["page_url"], content_type, silver["context"])
    old = silver["country_source"].is_null()
    location_country = silver.select(pl.when(old | (pl.col("country_source") == LOCATION_SOURCE)).then("country"))[
        "country"
    ]
    country, source = country_columns(location_country, silver["ip"], silver["platform"])
    return silver.with_columns(
        pl.coalesce(pl.col("is_asset"), flags).alias("is_asset"),
        pl.when(old).then(country).otherwise(pl.col("country")).alias("country"),
        pl.when(old).then(source).otherwise(pl.col("country_source")).alias("country_source"),
    )


def pseudonymize_columns(frame: pl.DataFrame, pseudonymizer: Pseudonymizer) -> pl.DataFrame:
    """``frame`` with each identifier that holds personal data replaced by its HMAC pseudonym
    (:data:`pipelines.pseudonyms.PERSONAL_ID_COLUMNS`, each distinct value once); idempotent."""
    return frame.with_columns(
        _map_distinct(frame[column], partial(pseudonymizer.identifier, column)).alias(column)
        for column in PERSONAL_ID_COLUMNS
    )


def build_quarantine(
    invalid: pl.DataFrame,
    reasons: list[list[dict[str, Any]]],
    suite: str,
    run_id: str,
    now: datetime,
    scrubber: Scrubber,
) -> pa.Table:
    """Invalid rows as ``rejected_events``: the original bronze row plus why and by whom, with the
    rules marked ``quarantine: true`` applied (:func:`scrub_quarantine_columns`).

    ``reasons[i]`` lists the failed checks of ``invalid``'s i-th row (at least one).
    """
    rows = scrub_quarantine_columns(invalid, scrubber)
    quarantine = rows.select(*RAW_EVENTS.schema.names, "bronze_version").with_columns(
        pl.lit(suite).alias("suite"),
        pl.Series("failed_expectations", [orjson.dumps(r).decode() for r in reasons], dtype=pl.String),
        pl.Series("reason", [r[0]["check"] for r in reasons], dtype=pl.String),
        pl.Series("reason_type", [r[0]["reason"] for r in reasons], dtype=pl.String),
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("quarantined_at"),
    )
    return quarantine.select(REJECTED_EVENTS.schema.names).to_arrow().cast(REJECTED_EVENTS.schema)
