"""Erasure of a person (the right to erasure, GDPR Art. 17): every row of theirs, in every layer.

A request names a user id as the client sent it (and optionally one app). It is turned at once into
a keyed hash (:meth:`pipelines.pseudonyms.Pseudonymizer.tombstone` of the id as silver stores it,
so the request itself, the Dagster run that carries it and the audit hold no personal data).
:func:`erase` then, in this order (each step idempotent, so a crash anywhere is finished by running
the same request again):

1. **Resolve** the person: the user id in silver form whose hash is the request's, in silver (both
   tiers), bronze, the quarantine and ``user_attributes``, and every id identity stitching linked to
   it: the anonymous and session ids of their events and gold's ``identity_links``.
2. **Tombstones**: the keyed hashes of those ids go to ``_state/erasure_tombstones`` (one commit).
   From then on silver drops every event of the person still in flight or arriving later
   (:func:`dropped_events`), and ``user_attributes`` loads skip them. Everything after this step
   matches rows by the tombstones, not by the ids.
3. **Gold's days** the person's silver rows fall on are recorded (``gold_recompute_days``, pending):
   the deletes of the cold tier reach no change feed.
4. **Deletes**, one commit per table (or per 20,000 ids): bronze, the quarantine, silver's hot and
   cold tiers, ``user_attributes``. A row is the person's when its user id is theirs, or when it has
   no user id and its anonymous id or session id was linked to them (how gold resolves people,
   ``warehouse/sql/create_people_events.sql``). Bronze and quarantine rows are matched on the ids
   their payload holds, read exactly as silver reads them (:func:`warehouse.contract.formats.read_event_fields`):
   never a substring.
5. **Gold's person-level state** (identity links, first-seen times, anonymous days) loses the
   person's rows, and the recorded days are tied to silver's new version: the next gold refresh
   (the hot path catches up when gold is behind silver) recomputes them, and the serving snapshot
   is published again.
6. **Audit**: one row in ``_state/erasures`` (request id, times, rows removed per table).

The old file versions and log entries still hold the rows until ``maintain_lake``'s vacuum and log
expiry pass them (after every consumer read past the erasure); its change-data files too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from pipelines.pseudonyms import PERSONAL_ID_COLUMNS, PREFIX, Pseudonymizer
from pipelines.transform import pseudonymize_columns
from warehouse.contract.formats import read_event_fields
from warehouse.gold import load_sql, registered, transaction
from warehouse.lake.maintenance import set_table_properties
from warehouse.lake.store import Lake, in_predicate
from warehouse.lake.tables import (
    ERASURE_PENDING,
    ERASURE_TOMBSTONES,
    ERASURES,
    EVENTS,
    RAW_EVENTS,
    REJECTED_EVENTS,
    USER_ATTRIBUTES,
    TableDef,
)

log = logging.getLogger(__name__)

#: The Dagster job that runs an erasure (pipelines.defs.lifecycle), started by ``eventlake-erase``.
ERASE_JOB = "erase_person"
#: Commit metadata of an erasure's deletes (``eventlake.erasure``: the request id).
ERASE_OPERATION = "erase"
#: Silver's table property naming the last erasure: its commit gives gold a version to recompute at.
LAST_ERASURE = "eventlake.lastErasure"
#: Event ids per delete commit (a delta-rs predicate is parsed as SQL text).
IDS_PER_COMMIT = 20_000
_SEP = "\x00"
#: Characters JSON text escapes (RFC 8259 section 7): an id holding one is not in the payload as is.
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


@dataclass(frozen=True)
class ErasureRequest:
    """One person to erase: ``request_id`` (32 hex digits), ``user_hash`` (the keyed hash of their user
    id in silver form, :func:`erasure_request`) and ``app`` (``None``: every app)."""

    request_id: str
    user_hash: str
    app: str | None


def _commit_metadata(request: ErasureRequest | None = None) -> dict[str, str]:
    """The Delta commit metadata of an erasure's deletes: the operation, and the request's id when
    one request made them (not for later arrivals and pending rows, deleted for every erasure)."""
    metadata = {"eventlake.operation": ERASE_OPERATION}
    if request is not None:
        metadata["eventlake.erasure"] = request.request_id
    return metadata


def erasure_request(pseudonymizer: Pseudonymizer, user_id: str, app: str | None = None) -> ErasureRequest:
    """The request to erase ``user_id`` (as the client sent it) in ``app`` (``None``: every app).

    The id is pseudonymized by silver's rule first (an email-like id is stored as its pseudonym),
    then hashed with the erasure's key: nothing in the request can be read back as the id.

    Raises:
        ValueError: ``user_id`` is empty.
    """
    if not user_id.strip():
        raise ValueError("the user id is empty")
    silver_form = pseudonymizer.identifier("user_id", user_id)
    return ErasureRequest(uuid.uuid4().hex, pseudonymizer.tombstone(silver_form), app or None)


class Tombstones:
    """The keyed hashes of erased people's ids, and which rows they match.

    ``rows``: ``(app, kind, id_hash)``; ``kind`` ``user`` (``app`` null: every app) or ``alias`` (an
    anonymous or session id linked to an erased user, in its app).
    """

    def __init__(self, rows: pl.DataFrame, pseudonymizer: Pseudonymizer) -> None:
        self.rows = rows
        self._pseudonymizer = pseudonymizer
        users = rows.filter(pl.col("kind") == "user")
        self._any_app = set(users.filter(pl.col("app").is_null())["id_hash"].to_list())
        self._users = {
            f"{app}{_SEP}{h}"
            for app, h in users.filter(pl.col("app").is_not_null()).select("app", "id_hash").iter_rows()
        }
        aliases = rows.filter(pl.col("kind") == "alias").select("app", "id_hash")
        self._aliases = {f"{app}{_SEP}{h}" for app, h in aliases.iter_rows()}
        self._hashes: dict[str, str] = {}

    def __len__(self) -> int:
        return self.rows.height

    def hashed(self, column: pl.Series) -> pl.Series:
        """Each value's keyed hash (:meth:`pipelines.pseudonyms.Pseudonymizer.tombstone`), once per distinct value."""
        values = [value for value in column.unique().drop_nulls().to_list() if value not in self._hashes]
        self._hashes.update((value, self._pseudonymizer.tombstone(value)) for value in values)
        return column.replace_strict(self._hashes, default=None, return_dtype=pl.String)

    def mask(self, frame: pl.DataFrame) -> pl.Series:
        """Which rows of ``frame`` (``app`` and the identifiers ``user_id``, ``anonymous_id``,
        ``session_id`` as silver stores them) belong to an erased person: the user id is theirs, or
        there is none (null or blank) and the anonymous or session id is linked to them. Boolean,
        never null."""
        app = frame["app"].fill_null("")
        user = self.hashed(frame["user_id"])
        own = user.is_in(list(self._any_app)) | (app + _SEP + user).is_in(list(self._users))
        # No user id: null, or blank (gold reads nullif(trim(user_id), ''), create_people_events.sql).
        anonymous = frame["user_id"].str.strip_chars().fill_null("") == ""
        linked = pl.Series([False] * frame.height, dtype=pl.Boolean)
        for column in ("anonymous_id", "session_id"):
            linked = linked | (app + _SEP + self.hashed(frame[column])).is_in(list(self._aliases)).fill_null(False)
        return (own.fill_null(False) | (anonymous & linked)).alias("erased")

    def user_mask(self, apps: pl.Series, users: pl.Series) -> pl.Series:
        """Which ``(app, user_id)`` pairs are an erased user's (``app`` null: a row for every app,
        matched only by a request for every app). Boolean, never null."""
        hashed = self.hashed(users)
        own = hashed.is_in(list(self._any_app)) | (apps.fill_null(_SEP) + _SEP + hashed).is_in(list(self._users))
        return own.fill_null(False)


def load_tombstones(lake: Lake, pseudonymizer: Pseudonymizer, request_id: str | None = None) -> Tombstones | None:
    """The tombstones of every erasure (or of ``request_id``'s); ``None`` when there are none."""
    if lake.version(ERASURE_TOMBSTONES) is None:
        return None
    rows = pl.from_arrow(lake.dataset(ERASURE_TOMBSTONES).to_table(columns=["request_id", "app", "kind", "id_hash"]))
    assert isinstance(rows, pl.DataFrame)
    if request_id is not None:
        rows = rows.filter(pl.col("request_id") == request_id)
    return Tombstones(rows.drop("request_id"), pseudonymizer) if rows.height else None


def dropped_events(decoded: pl.DataFrame, tombstones: Tombstones | None, pseudonymizer: Pseudonymizer) -> pl.Series:
    """Which rows of a silver micro-batch (``decoded``: bronze rows with the client's identifiers,
    :func:`pipelines.transform.decode`) are an erased person's: silver drops them (they reach
    neither silver nor the quarantine). All false without tombstones."""
    if tombstones is None or decoded.height == 0:
        return pl.Series("erased", [False] * decoded.height, dtype=pl.Boolean)
    # A copy: the run's report counts the identifiers silver pseudonymizes, once.
    ids = pseudonymize_columns(decoded.select("app", *PERSONAL_ID_COLUMNS), replace(pseudonymizer, count=0))
    return tombstones.mask(ids)


def delete_arrivals(lake: Lake, rows: pl.DataFrame, today: date | None = None) -> list[int]:
    """Delete from bronze the ``rows`` (``event_id``, ``received_date``) of erased people that arrived
    after their erasure (silver drops them, :func:`dropped_events`): one commit per partition, today's
    rows when the day is over (:func:`_delete_bronze`). A crash before it leaves them in bronze, where
    silver has read them: a reprocess would drop them again. Returns the versions of the deletes."""
    day = today or datetime.now(UTC).date()
    return _delete_bronze(lake, rows, _commit_metadata(), day)[0]


@dataclass
class ErasureReport:
    """What :func:`erase` did: ``found`` (false: nothing of the user anywhere, nothing written),
    ``tombstones`` recorded and ``removed`` rows per table (``events`` and ``cold_events`` are
    silver's tiers; gold's state tables by name)."""

    request: ErasureRequest
    found: bool = False
    tombstones: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Source:
    """One table (and tier) erasure reads: its person rows as ``(part, app, user_id, anonymous_id,
    session_id)`` in silver form (``part``: the partition), and then its rows' event ids."""

    def __init__(
        self, name: str, tier: Lake, table: TableDef, pseudonymizer: Pseudonymizer, handled: pl.Series | None = None
    ) -> None:
        self.name, self.tier, self.table, self.pseudonymizer = name, tier, table, pseudonymizer
        self.part = table.partition_by[0]
        self.raw = table is not EVENTS  # bronze rows: identifiers inside the payload
        self.handled = handled  # event ids an earlier erasure already queued for deletion: not theirs to find

    def _frames(self, parts: list[date] | None, needles: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The table's rows (of ``parts`` only, when given), batch by batch. ``needles``: for bronze
        rows, only those whose payload text contains one of them are decoded (the others cannot hold
        those ids)."""
        version = self.tier.version(self.table)
        if version is None:
            return
        columns = ["event_id", self.part, "app"]
        if self.raw:
            columns += ["payload", "event_type", "source_format"]
        else:
            columns += [*PERSONAL_ID_COLUMNS, "source", "timestamp", "event_type"]
        filters = [()] if parts is None else [((self.part, "=", part),) for part in parts]
        for files in filters:
            dataset = self.tier.dataset(self.table, version, files=files, cold=False)
            for batch in dataset.to_batches(columns=columns, batch_size=200_000):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                if self.handled is not None:
                    frame = frame.filter(~pl.col("event_id").is_in(self.handled))
                if not self.raw:
                    yield frame
                    continue
                if needles is not None:
                    frame = frame.filter(pl.col("payload").str.contains_any(needles))
                yield _identifiers(frame, self.pseudonymizer)

    def people(self, needles: list[str] | None = None) -> pl.DataFrame:
        """Distinct ``(part, app, user_id, anonymous_id, session_id)`` of the table (of bronze rows
        holding one of ``needles`` only, when given: see :meth:`_frames`)."""
        keys = [self.part, "app", *PERSONAL_ID_COLUMNS]
        frames = [frame.select(keys).unique() for frame in self._frames(None, needles)]
        return pl.concat(frames).unique() if frames else pl.DataFrame(schema={k: pl.String for k in keys})

    def matched(self, tombstones: Tombstones, parts: list[date], needles: list[str] | None) -> pl.DataFrame:
        """The rows of ``parts`` the tombstones match (every column read); ``needles``: see :meth:`_frames`."""
        frames = [frame.filter(tombstones.mask(frame)) for frame in self._frames(parts, needles)]
        return pl.concat(frames) if frames else pl.DataFrame()


def _needles(values: list[str]) -> list[str] | None:
    """The texts every bronze payload of a person whose identifiers are ``values`` (as silver stores
    them) contains one of: the values themselves, when silver stores them as sent (no pseudonym) and
    JSON writes them unescaped; ``None`` otherwise, or when there are none (every row is decoded)."""
    if not values or any(value.startswith(PREFIX) or _ESCAPED.search(value) for value in values):
        return None
    return sorted(set(values))


def _identifiers(frame: pl.DataFrame, pseudonymizer: Pseudonymizer) -> pl.DataFrame:
    """Bronze rows with the identifiers their payload holds, read as silver reads them, in silver form."""
    fields = [
        read_event_fields(payload, event_type, source_format)
        for payload, event_type, source_format in frame.select("payload", "event_type", "source_format").iter_rows()
    ]
    ids = pl.DataFrame(
        {column: [getattr(row, column) for row in fields] for column in PERSONAL_ID_COLUMNS},
        schema={column: pl.String for column in PERSONAL_ID_COLUMNS},
    )
    combined = pl.concat([frame.drop("payload"), ids], how="horizontal")
    return pseudonymize_columns(combined, pseudonymizer)


def _sources(lake: Lake, pseudonymizer: Pseudonymizer) -> list[_Source]:
    """Every table and tier an erasure reads. Bronze's rows already waiting in
    ``_state/erasure_pending`` are left out: an earlier erasure found them (so erasing the same user
    again the same day says it was erased before)."""
    pending = None
    if lake.version(ERASURE_PENDING) is not None:
        pending = pl.Series(lake.dataset(ERASURE_PENDING).to_table(columns=["event_id"])["event_id"])
    sources = [
        _Source(RAW_EVENTS.name, lake, RAW_EVENTS, pseudonymizer, pending),
        _Source(REJECTED_EVENTS.name, lake, REJECTED_EVENTS, pseudonymizer),
        _Source(EVENTS.name, lake, EVENTS, pseudonymizer),
    ]
    if lake.cold is not None:
        sources.append(_Source(f"cold_{EVENTS.name}", lake.cold, EVENTS, pseudonymizer))
    return sources


def _resolve(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    pseudonymizer: Pseudonymizer,
    request: ErasureRequest,
    people: pl.DataFrame,
) -> tuple[pl.DataFrame, list[str]]:
    """The tombstone rows ``(app, kind, id_hash)`` of the request's person, empty when the user is
    nowhere: their user hash, and the hashes of every anonymous and session id linked to them in
    ``people`` (the tables' distinct identifiers) and in gold's ``identity_links``; and those ids
    as silver stores them (their user ids and aliases)."""
    request_only = pl.DataFrame(
        {"app": [request.app], "kind": ["user"], "id_hash": [request.user_hash]},
        schema={"app": pl.String, "kind": pl.String, "id_hash": pl.String},
    )
    tombstones = Tombstones(request_only, pseudonymizer)
    if request.app is not None:
        people = people.filter(pl.col("app") == request.app)
    own = people.filter(tombstones.mask(people))
    users = own.select("app", "user_id").unique()
    seen = (
        pl.concat(
            [
                own.select("app", pl.col("anonymous_id").alias("alias_id")),
                own.select("app", pl.col("session_id").alias("alias_id")),
            ]
        )
        .drop_nulls()
        .unique()
    )
    links = _links(con, users, seen)
    attributes = _attribute_users(lake, tombstones)
    if not (users.height or links.height or attributes):
        return request_only.clear(), []
    # An id seen with the user is theirs unless identity stitching gave it to someone else (a shared
    # device: the first user linked keeps it); the ids linked to the user are theirs.
    others = links.join(users.rename({"user_id": "person_id"}), on=["app", "person_id"], how="anti")
    aliases = pl.concat(
        [
            seen.join(others.select("app", "alias_id"), on=["app", "alias_id"], how="anti"),
            links.join(others.select("app", "alias_id"), on=["app", "alias_id"], how="anti").select("app", "alias_id"),
        ]
    ).unique()
    alias_rows = aliases.select(
        "app", pl.lit("alias").alias("kind"), tombstones.hashed(aliases["alias_id"]).alias("id_hash")
    )
    values = pl.concat([users["user_id"], aliases["alias_id"]]).drop_nulls().unique().to_list()
    return pl.concat([request_only, alias_rows]).unique(), values


def _resolve_everywhere(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    pseudonymizer: Pseudonymizer,
    request: ErasureRequest,
    sources: list[_Source],
    people: dict[str, pl.DataFrame],
) -> tuple[pl.DataFrame, list[str] | None]:
    """:func:`_resolve` over every source: first silver's (``people`` holds them: columns, cheap to
    read), then bronze's and the quarantine's rows whose payload holds one of the person's ids found
    so far, decoded and added to ``people``, until they bring no new id (the ids seen with the user
    only in events silver has not read yet). Every payload is decoded when silver stores the ids as
    pseudonyms (:func:`_needles`). Returns the tombstone rows and the needles bronze was read with."""
    raw = [source for source in sources if source.raw]
    rows, values = _resolve(lake, con, pseudonymizer, request, _every(sources, people))
    while True:
        needles = _needles(values)
        for source in raw:
            people[source.name] = source.people(needles)
        rows, values = _resolve(lake, con, pseudonymizer, request, _every(sources, people))
        if needles is None or set(values) <= set(needles):
            return rows, needles


def _every(sources: list[_Source], people: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The distinct identifiers of the sources ``people`` holds, without their partition column."""
    return pl.concat([people[source.name].drop(source.part) for source in sources if source.name in people])


def _links(con: duckdb.DuckDBPyConnection, users: pl.DataFrame, seen: pl.DataFrame) -> pl.DataFrame:
    """Gold's identity links ``(app, alias_id, person_id)`` of ``users`` (``app``, ``user_id``) and of
    the ids ``seen`` with them (``app``, ``alias_id``), whoever they link to."""
    with registered(con, {"erased_users": users.to_arrow(), "seen_aliases": seen.to_arrow()}):
        rows = con.sql(load_sql("select_erased_links")).to_arrow_table()
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _attribute_users(lake: Lake, tombstones: Tombstones) -> int:
    if lake.version(USER_ATTRIBUTES) is None:
        return 0
    frame = pl.from_arrow(lake.dataset(USER_ATTRIBUTES).to_table(columns=["app", "user_id"]))
    assert isinstance(frame, pl.DataFrame)
    return int(tombstones.user_mask(frame["app"], frame["user_id"]).sum())


def erase(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    pseudonymizer: Pseudonymizer,
    request: ErasureRequest,
    timezone: str = "UTC",
    today: date | None = None,
) -> ErasureReport:
    """Erase the request's person from the lake and gold's person-level state (module docstring).

    ``con``: the gold warehouse (its writer); ``timezone``: gold's reporting time zone (the days to
    recompute are reporting days); ``today``: the UTC day bronze still receives (default: now's).
    Running the same request again finishes what a crash left (the tombstones recorded first decide
    what matches). Returns the report; ``found`` false when
    nothing of the user exists anywhere (then nothing was written).

    Raises:
        deltalake.exceptions.DeltaError: a delete failed (tables erased before stay erased; run again).
        duckdb.Error: gold's state could not be updated (run again).
    """
    report = ErasureReport(request)
    started = time.monotonic()
    sources = _sources(lake, pseudonymizer)
    people = {source.name: source.people() for source in sources if not source.raw}
    tombstones = load_tombstones(lake, pseudonymizer, request.request_id)
    needles: list[str] | None = None  # run again: the ids as stored are not kept, every payload is read
    if tombstones is None:
        rows, needles = _resolve_everywhere(lake, con, pseudonymizer, request, sources, people)
        if rows.height == 0:
            log.info("erasure %s: the user is nowhere in the lake or gold", request.request_id)
            _audit(lake, report)
            return report
        lake.append(ERASURE_TOMBSTONES, _tombstone_rows(request, rows, report.requested_at))
        tombstones = Tombstones(rows, pseudonymizer)
    else:
        people.update((source.name, source.people()) for source in sources if source.raw)
    report.found, report.tombstones = True, len(tombstones)
    resolved = time.monotonic()
    for source in sources:
        own = people[source.name].filter(tombstones.mask(people[source.name]))
        parts = sorted(set(own[source.part].to_list()))
        matched = source.matched(tombstones, parts, needles) if parts else pl.DataFrame()
        if source.table is EVENTS and matched.height:
            _record_days(con, request, matched, timezone)
        report.removed.update(_delete(source, request, matched, today or datetime.now(UTC).date()))
    report.removed[USER_ATTRIBUTES.name] = _delete_attributes(lake, tombstones, request)
    # A commit on silver's hot table, always: gold recomputes the recorded days at its version.
    version = set_table_properties(lake, EVENTS, {LAST_ERASURE: request.request_id})
    deleted = time.monotonic()
    report.removed.update(_erase_gold_state(con, tombstones, request, version))
    _audit(lake, report)
    log.info(
        "erasure %s: %s; resolve %.1f s, lake deletes %.1f s, gold state %.1f s",
        request.request_id,
        report.removed,
        resolved - started,
        deleted - resolved,
        time.monotonic() - deleted,
    )
    return report


def _tombstone_rows(request: ErasureRequest, rows: pl.DataFrame, at: datetime) -> pa.Table:
    return (
        rows.with_columns(pl.lit(request.request_id).alias("request_id"), pl.lit(at).alias("requested_at"))
        .select(ERASURE_TOMBSTONES.schema.names)
        .to_arrow()
        .cast(ERASURE_TOMBSTONES.schema)
    )


def _record_days(con: duckdb.DuckDBPyConnection, request: ErasureRequest, rows: pl.DataFrame, timezone: str) -> None:
    """Record the reporting days of the person's silver ``rows`` for gold to recompute (pending
    until :func:`_erase_gold_state` ties them to a silver version)."""
    changed = rows.select("app", "source", "timestamp", "event_type", pl.lit("delete").alias("_change_type"))
    with registered(con, {"changed_rows": changed.to_arrow()}), transaction(con):
        days = con.sql(load_sql("select_changed_event_days"), params={"timezone": timezone}).to_arrow_table()
        with registered(con, {"recorded_days": days}):
            con.execute(load_sql("insert_recompute_days"), {"request_id": request.request_id})


def _delete(source: _Source, request: ErasureRequest, matched: pl.DataFrame, today: date) -> dict[str, int]:
    """Delete ``matched``'s event ids from ``source`` (their partitions only; bronze's ``today`` when
    the day is over, :func:`_delete_bronze`); returns rows deleted (and, for bronze, waiting)."""
    if matched.height == 0:
        return {source.name: 0}
    metadata = _commit_metadata(request)
    if source.table is RAW_EVENTS:  # appended to meanwhile: a count before and after would not tell
        waiting = _delete_bronze(source.tier, matched, metadata, today)[1]
        closed = matched.filter(pl.col("received_date") < today).height
        return {source.name: closed, f"{source.name}_after_the_day": waiting}
    before = source.tier.dataset(source.table, cold=False).count_rows()
    _delete_ids(source.tier, source.table, matched, metadata)
    return {source.name: before - source.tier.dataset(source.table, cold=False).count_rows()}


def _delete_ids(tier: Lake, table: TableDef, rows: pl.DataFrame, metadata: dict[str, str]) -> list[int]:
    """Delete ``rows``' event ids from ``table``, partition by partition (``rows`` has the table's
    partition column), at most :data:`IDS_PER_COMMIT` ids a commit; returns the commits' versions.

    A predicate overwrite with no rows (Delta's replaceWhere), not delta-rs's ``delete``: since
    deltalake 1.4 ``delete`` rewrites string columns as ``string_view``, which pyarrow's comparison
    kernels cannot read (delta-io/delta-rs#4579; a gold rebuild failed on them). Both rewrite only
    the files holding a matching row, keeping their other rows."""
    part = table.partition_by[0]
    versions = []
    for day, ids in rows.group_by(part).agg(pl.col("event_id").unique()).iter_rows():
        for start in range(0, len(ids), IDS_PER_COMMIT):
            chunk = ids[start : start + IDS_PER_COMMIT]
            predicate = f"{part} = '{day.isoformat()}' and {in_predicate('event_id', chunk)}"
            versions.append(tier.replace_where(table, table.schema.empty_table(), predicate, metadata))
    return versions


def _delete_bronze(lake: Lake, rows: pl.DataFrame, metadata: dict[str, str], today: date) -> tuple[list[int], int]:
    """Delete ``rows`` (``event_id``, ``received_date``) from bronze's received days before ``today``
    (UTC); record those of ``today`` (still appended to by the ingest API, whose commits every
    rewrite of the day would conflict with) in ``_state/erasure_pending``, deleted by the first
    ``tier_lake`` run after the day (:func:`purge_pending`). Returns the deletes' versions and how
    many rows wait."""
    closed = rows.filter(pl.col("received_date") < today)
    open_ = rows.filter(pl.col("received_date") >= today).select("event_id", "received_date").unique()
    versions = _delete_ids(lake, RAW_EVENTS, closed, metadata) if closed.height else []
    if open_.height:
        pending = open_.with_columns(pl.lit(datetime.now(UTC)).alias("recorded_at"))
        lake.append(ERASURE_PENDING, pending.to_arrow().cast(ERASURE_PENDING.schema))
    return versions, open_.height


def purge_pending(lake: Lake, today: date) -> int:
    """Delete from bronze the erased people's rows recorded in ``_state/erasure_pending`` whose
    received day is before ``today`` (UTC), then forget them; returns how many. A crash in between
    deletes them again next time (nothing left to delete)."""
    if lake.version(ERASURE_PENDING) is None:
        return 0
    rows = pl.from_arrow(lake.dataset(ERASURE_PENDING).to_table(columns=["event_id", "received_date"]))
    assert isinstance(rows, pl.DataFrame)
    due = rows.filter(pl.col("received_date") < today)
    if due.height == 0:
        return 0
    _delete_ids(lake, RAW_EVENTS, due, _commit_metadata())
    before = f"received_date < '{today.isoformat()}'"
    lake.replace_where(ERASURE_PENDING, ERASURE_PENDING.schema.empty_table(), before)
    log.info("deleted %d bronze rows of erased people from days before %s", due.height, today)
    return due.height


def _delete_attributes(lake: Lake, tombstones: Tombstones, request: ErasureRequest) -> int:
    """Rewrite ``user_attributes`` without the erased users' rows (a small table, written whole by
    each users load); returns rows removed. Not a delete by predicate: its text (the user id) would
    stay in the table's log for good."""
    if lake.version(USER_ATTRIBUTES) is None:
        return 0
    table = lake.dataset(USER_ATTRIBUTES).to_table()
    frame = pl.from_arrow(table.select(["app", "user_id"]))
    assert isinstance(frame, pl.DataFrame)
    erased = tombstones.user_mask(frame["app"], frame["user_id"])
    if not erased.any():
        return 0
    lake.overwrite(USER_ATTRIBUTES, table.filter(pa.array((~erased).to_list())), _commit_metadata(request))
    return int(erased.sum())


def _erase_gold_state(
    con: duckdb.DuckDBPyConnection, tombstones: Tombstones, request: ErasureRequest, silver_version: int
) -> dict[str, int]:
    """Delete the erased people's rows from gold's person-level state and tie the request's
    recorded days to ``silver_version`` (one transaction); returns rows deleted per table."""
    ids = pl.from_arrow(con.sql(load_sql("select_person_ids")).to_arrow_table())
    assert isinstance(ids, pl.DataFrame)
    none = pl.lit(None, pl.String)
    as_user = ids.select("app", pl.col("id").alias("user_id"), none.alias("anonymous_id"), none.alias("session_id"))
    as_alias = ids.select("app", none.alias("user_id"), pl.col("id").alias("anonymous_id"), none.alias("session_id"))
    erased = ids.filter(tombstones.mask(as_user) | tombstones.mask(as_alias))
    with registered(con, {"erased_ids": erased.to_arrow()}), transaction(con):
        removed = dict(con.execute(load_sql("select_erased_state_rows")).fetchall())
        con.execute(load_sql("delete_erased_people"))
        con.execute(load_sql("delete_recomputed_days"))
        con.execute(
            load_sql("tie_recompute_days"), {"request_id": request.request_id, "silver_version": silver_version}
        )
    return {table: int(count) for table, count in removed.items() if count}


def _audit(lake: Lake, report: ErasureReport) -> None:
    row = {
        "request_id": [report.request.request_id],
        "app": [report.request.app],
        "found": [report.found],
        "requested_at": [report.requested_at],
        "completed_at": [datetime.now(UTC)],
        "rows_removed": [orjson.dumps(report.removed, option=orjson.OPT_SORT_KEYS).decode()],
    }
    lake.append(ERASURES, pa.table(row).cast(ERASURES.schema))


def audit_row(lake: Lake, request_id: str) -> dict[str, object] | None:
    """The audit row of ``request_id`` (the last one when it ran more than once), ``None`` when none."""
    if lake.version(ERASURES) is None:
        return None
    rows = pl.from_arrow(lake.dataset(ERASURES).to_table())
    assert isinstance(rows, pl.DataFrame)
    rows = rows.filter(pl.col("request_id") == request_id).sort("completed_at")
    return rows.row(-1, named=True) if rows.height else None


def removed_rows(audit: dict[str, object]) -> dict[str, int]:
    """The rows removed per table an audit row (:func:`audit_row`) records."""
    return orjson.loads(str(audit["rows_removed"]))


def erased_before(lake: Lake, user_hash: str) -> bool:
    """Whether a user with this keyed hash was erased before (their tombstone is there)."""
    if lake.version(ERASURE_TOMBSTONES) is None:
        return False
    hashes = lake.dataset(ERASURE_TOMBSTONES).to_table(columns=["kind", "id_hash"]).to_pylist()
    return {"kind": "user", "id_hash": user_hash} in hashes
