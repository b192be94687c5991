"""Table names and schemas of every layer, with the meaning of each column.

Timestamps are UTC with microsecond precision (``timestamp[us, tz=UTC]``); day columns
are ``date32`` (a calendar day in UTC).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per table
class TableDef:
    """A Delta table of the lake: its path under the lake root, schema and partition columns.

    ``columns`` maps each column to its meaning (documentation, shown in Dagster metadata).
    ``tiered``: old partitions (of the first partition column) move to the lake's cold tier
    (:mod:`warehouse.lake.tiers`), and reads span both tiers (:meth:`warehouse.lake.store.Lake.dataset`);
    ``key``: the column unique across the table (and its tiers), if any.
    ``stats_columns``: when set, the only columns whose min/max statistics the Delta log keeps
    (``delta.dataSkippingStatsColumns``): those readers prune files by. The log copies a string
    column's statistics verbatim (a prefix of the value), so text columns stay out of it.
    """

    name: str
    path: str
    columns: dict[str, tuple[pa.DataType, str]]
    partition_by: tuple[str, ...] = ()
    change_data_feed: bool = False
    stats_columns: tuple[str, ...] = ()
    tiered: bool = False
    key: str | None = None

    @property
    def properties(self) -> dict[str, str]:
        """The Delta table properties the table must carry (Delta protocol, "Table Properties")."""
        # Log entries are expired by the maintenance job only, never past a consumer's watermark
        # (warehouse.lake.maintenance.expire_log); delta-rs would expire them by age at each checkpoint.
        # Checkpoints keep the tombstones of removed files this long only: the vacuum finds files no
        # version needs by listing storage (warehouse.lake.maintenance.vacuum), and a week of tombstones
        # (delta's default) at 20 commits/s made each checkpoint millions of rows and every compaction
        # of a busy table slower with its age.
        properties = {
            "delta.enableExpiredLogCleanup": "false",
            "delta.deletedFileRetentionDuration": "interval 1 minute",
        }
        if self.change_data_feed:
            properties["delta.enableChangeDataFeed"] = "true"
        if self.stats_columns:
            properties["delta.dataSkippingStatsColumns"] = ",".join(self.stats_columns)
        return properties

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema, columns in declaration order (built once: ~5 µs, read per request)."""
        return pa.schema([pa.field(name, dtype) for name, (dtype, _) in self.columns.items()])


_BRONZE_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "event_id": (pa.string(), "native: uuid5(ns, '<payload uuid>/<event_type>'); Segment: messageId; see contract"),
    "event_type": (pa.string(), "native: key under the payload's `events`, or 'page_view'; Segment: see segment"),
    "app": (pa.string(), "product or dataset the event belongs to ('default' when not sent)"),
    "source": (pa.string(), "the source whose write key sent it (warehouse.sources)"),
    "source_format": (pa.string(), "wire format it arrived in: 'native', 'segment', 'posthog' or 'snowplow'"),
    "received_at": (UTC_TS, "when the ingest API received the request (UTC, µs)"),
    "received_date": (pa.date32(), "UTC day of received_at; the partition column"),
    "original_timestamp": (pa.string(), "the client's timestamp exactly as sent (RFC 3339 text or epoch s/ms)"),
    "sent_at": (UTC_TS, "the client's clock when it sent the batch (sentAt), if sent"),
    "timestamp": (UTC_TS, "event time in UTC: received_at - (sent_at - original) when sentAt was sent, else parsed"),
    "timestamp_naive": (pa.bool_(), "the client's timestamp had no UTC offset and was read as UTC"),
    "timestamp_in_future": (pa.bool_(), "timestamp is still more than 24 h after received_at"),
    "user_agent": (pa.string(), "payload userAgent, else the request's User-Agent header"),
    "ip": (pa.string(), "payload ip, else the request's peer address (full; truncated in silver)"),
    "payload": (pa.string(), "the original payload JSON (native: `events` narrowed to this event), no credentials"),
}

RAW_EVENTS = TableDef(
    name="raw_events",
    path="bronze/raw_events",
    columns=_BRONZE_COLUMNS,
    partition_by=("received_date",),
    change_data_feed=True,
    # Read by version and received_date (a partition); the payload, user agent and IP (personal
    # data an erasure removes) never reach the log's statistics.
    stats_columns=("event_id", "received_at", "timestamp", "sent_at"),
)

EVENTS = TableDef(
    name="events",
    path="silver/events",
    columns={
        "event_id": (pa.string(), "unique key: exactly one silver row per event_id, across all days"),
        "event_type": (pa.string(), "page_view, click, scroll, cancel, errors or a custom name"),
        "app": (pa.string(), "product or dataset"),
        "source": (pa.string(), "the source whose write key sent it"),
        "source_format": (pa.string(), "wire format it arrived in"),
        "timestamp": (UTC_TS, "when the event happened, per the client, skew-corrected (UTC)"),
        "event_date": (pa.date32(), "UTC day of timestamp; the partition column"),
        "received_at": (UTC_TS, "when the ingest API received it (UTC)"),
        "sent_at": (UTC_TS, "the client's clock when it sent the batch, if sent (UTC)"),
        "timestamp_naive": (pa.bool_(), "the client's timestamp had no UTC offset and was read as UTC"),
        "user_id": (pa.string(), "the client's user id, if any"),
        "anonymous_id": (pa.string(), "the client's anonymous (device) id, if any (Segment anonymousId)"),
        "session_id": (pa.string(), "the client's session id, if any"),
        "page_url": (pa.string(), "page or screen URL, scrubbed of secrets and emails"),
        "referrer": (pa.string(), "referrer URL, scrubbed"),
        "location": (pa.string(), "client-sent location (text, or JSON text for an object)"),
        "properties": (pa.string(), "the event's value as a JSON object, scrubbed"),
        "context": (pa.string(), "SDK context as JSON (locale, timezone, device, os, app, library…), scrubbed"),
        "ip": (pa.string(), "IP truncated to its network (IPv4 /24, IPv6 /48)"),
        "user_agent": (pa.string(), "raw user agent string"),
        "browser_family": (pa.string(), "from the user agent (ua-parser), e.g. 'Chrome'"),
        "browser_version": (pa.string(), "major[.minor] browser version"),
        "os_family": (pa.string(), "operating system family, e.g. 'Mac OS X'"),
        "os_version": (pa.string(), "major[.minor] OS version"),
        "device_family": (pa.string(), "device family, e.g. 'iPhone', 'Other', 'Spider'"),
        "is_bot": (pa.bool_(), "crawler/bot per crawlerdetect or ua-parser; excluded from people metrics"),
        "bronze_version": (pa.int64(), "bronze table version the row was committed in (lineage)"),
        "run_id": (pa.string(), "Dagster run that wrote the row"),
        # Added after the first release: Lake.ensure adds it to older tables, whose rows read NULL.
        "content_hash": (pa.string(), "BLAKE2b-128 of the client-sent content (pipelines.consistency)"),
        "device_type": (pa.string(), "device-detector's device type: desktop, smartphone, tablet, tv, …"),
        "platform": (pa.string(), "web, ios, android, desktop or server: SDK context, else user agent"),
        "country": (pa.string(), "ISO 3166-1 alpha-2 code: the client-sent location's, else its IP network's"),
        "is_asset": (
            pa.bool_(),
            "a page_view requesting a static file (.css, .png, …): not a page (pipelines.enrichment)",
        ),
        "country_source": (pa.string(), "which input gave `country`: 'location' (client-sent) or 'ip' (pipelines.geo)"),
    },
    partition_by=("event_date",),
    change_data_feed=True,
    # Files are pruned by event_date (a partition: no statistics needed) and received_at (the data
    # quality mart's received days); event_id is an opaque key.
    stats_columns=("event_id", "timestamp", "received_at"),
    tiered=True,
    key="event_id",
)

REJECTED_EVENTS = TableDef(
    name="rejected_events",
    path="quarantine/rejected_events",
    columns={
        **_BRONZE_COLUMNS,
        "suite": (pa.string(), "expectation suite that was applied"),
        "failed_expectations": (pa.string(), "JSON list of {check, reason, expectation, column[, detail]} that failed"),
        "reason": (pa.string(), "the first failed check's name, for grouping"),
        "reason_type": (
            pa.string(),
            "typed reason of that check (schema_violation, timestamp_out_of_range, size_violation, …)",
        ),
        "bronze_version": (pa.int64(), "bronze table version the row was committed in"),
        "run_id": (pa.string(), "Dagster run that quarantined the row"),
        "quarantined_at": (UTC_TS, "when it was quarantined (UTC)"),
    },
    partition_by=("received_date",),
    # Read by received_date (a partition) and event_id; the raw payload never reaches the log.
    stats_columns=("event_id", "received_at", "quarantined_at"),
)

WATERMARKS = TableDef(
    name="watermarks",
    path="_state/watermarks",
    columns={
        "consumer": (pa.string(), "table that consumed the upstream (e.g. 'events')"),
        "upstream": (pa.string(), "table it read (e.g. 'raw_events')"),
        "upstream_version": (pa.int64(), "last upstream Delta version fully processed"),
        "run_id": (pa.string(), "run that processed it"),
        "committed_at": (UTC_TS, "when the watermark was advanced (UTC)"),
    },
)

QUARANTINE_REPLAYS = TableDef(
    name="quarantine_replays",
    path="quarantine/replays",
    columns={
        "event_id": (pa.string(), "the quarantined event that passed on replay"),
        "bronze_version": (pa.int64(), "its bronze version (with event_id, the quarantine row's key)"),
        "run_id": (pa.string(), "Dagster run of the replay_quarantine job"),
        "replayed_at": (UTC_TS, "when it moved to silver (UTC)"),
    },
)

PROPERTY_TYPES = TableDef(
    name="property_types",
    path="_state/property_types",
    columns={
        "app": (pa.string(), "product or dataset"),
        "event_type": (pa.string(), "event type the property belongs to"),
        "property": (pa.string(), "top-level key of the event's properties"),
        "json_type": (pa.string(), "JSON type first seen: string, number, boolean, array or object"),
        "first_seen_at": (UTC_TS, "received_at of the first event that carried it (UTC)"),
        "bronze_version": (pa.int64(), "bronze version of that event"),
        "run_id": (pa.string(), "Dagster run that registered it"),
        "registered_at": (UTC_TS, "when it was registered (UTC)"),
    },
)

USER_ATTRIBUTES = TableDef(
    name="user_attributes",
    path="silver/user_attributes",
    columns={
        "app": (pa.string(), "app the row belongs to; null: every app"),
        "user_id": (pa.string(), "user id as in silver (pseudonymized by the same rule)"),
        "attribute": (pa.string(), "attribute name: a column of the users source (plan, country, …)"),
        "value": (pa.string(), "the attribute's value in this version, as text"),
        "valid_from": (UTC_TS, "when this version became true (UTC); null: since always"),
        "valid_to": (UTC_TS, "the next version's valid_from (UTC, exclusive); null: still valid"),
        "run_id": (pa.string(), "Dagster run that loaded the users source"),
    },
    # Read whole; user ids and attribute values (personal data) never reach the log's statistics.
    stats_columns=("valid_from", "valid_to"),
)

ERASURE_TOMBSTONES = TableDef(
    name="erasure_tombstones",
    path="_state/erasure_tombstones",
    columns={
        "request_id": (pa.string(), "the erasure request (pipelines.erasure)"),
        "app": (pa.string(), "app the id belongs to; null: a user id erased in every app"),
        "kind": (pa.string(), "'user' (the erased user id) or 'alias' (an anonymous or session id linked to it)"),
        "id_hash": (pa.string(), "keyed hash of the id in silver form (pipelines.pseudonyms.Pseudonymizer.tombstone)"),
        "requested_at": (UTC_TS, "when the erasure was requested (UTC)"),
    },
    stats_columns=("requested_at",),
)

ERASURE_PENDING = TableDef(
    name="erasure_pending",
    path="_state/erasure_pending",
    columns={
        "event_id": (pa.string(), "a bronze event of an erased person in a received day still open to appends"),
        "received_date": (pa.date32(), "its bronze partition: deleted from it once the day is over (tier_lake)"),
        "recorded_at": (UTC_TS, "when it was recorded (UTC)"),
    },
    stats_columns=("received_date", "recorded_at"),
)

ERASURES = TableDef(
    name="erasures",
    path="_state/erasures",
    columns={
        "request_id": (pa.string(), "the erasure request (pipelines.erasure)"),
        "app": (pa.string(), "the app it was limited to; null: every app"),
        "found": (pa.bool_(), "whether anything of the user was found (false: nothing was erased)"),
        "requested_at": (UTC_TS, "when the erasure started (UTC)"),
        "completed_at": (UTC_TS, "when it finished (UTC)"),
        "rows_removed": (pa.string(), "JSON object: rows deleted per table and tier"),
    },
    stats_columns=("requested_at", "completed_at"),
)

#: Gold state in the DuckDB warehouse file shared by every mart (warehouse/sql/create_gold_state.sql);
#: each mart's own table is named by its folder (warehouse/marts).
IDENTITY_LINKS = "identity_links"
PERSON_FIRST_SEEN = "person_first_seen"
FIRST_SEEN_MOVES = "first_seen_moves"
ANONYMOUS_DAYS = "anonymous_days"
GOLD_WATERMARKS = "gold_watermarks"
