"""The bronze → silver step in its three modes, all through the same suite and rules.

* :func:`ingest`: bronze versions after silver's watermark (the sensor's hot path), at most
  ``max_rows`` bronze rows per run (whole commits), so a backlog is worked off in bounded
  micro-batches instead of one that may not fit in memory.
* :func:`replay_quarantine`: quarantined rows not replayed yet, re-validated with today's suite
  and rules; those that now pass move into silver exactly once (anti-join on ``event_id``) and
  are recorded in ``quarantine_replays``.
* :func:`pipelines.reprocess.reprocess`: rebuild silver for an ``event_date`` range from bronze, replacing the range
  in one Delta commit (``replaceWhere``), e.g. after a scrub rule was added. Rerunning it gives
  the same rows. Gold follows through silver's change data feed (inserts and deletes).

Every mode validates with Great Expectations, quarantines what fails, scrubs and enriches what
passes, and registers properties first seen (``property_types``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipelines import transform
from pipelines.consistency import type_conflicts
from pipelines.erasure import delete_arrivals, dropped_events, load_tombstones
from pipelines.parallel import Parallelism, RowPool
from pipelines.pseudonyms import Pseudonymizer
from pipelines.registry import known_types, register
from pipelines.scrub_rules import RULES_PROPERTY
from pipelines.scrubbing import Scrubber
from pipelines.validation import FAILED_CHECKS, CheckOutcome, failed_checks, split_by_suite, split_rows, suite_columns
from warehouse.lake.history import change_stream, commit_rows
from warehouse.lake.key_index import IndexBusyError, shared_key_index
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, QUARANTINE_REPLAYS, RAW_EVENTS, REJECTED_EVENTS
from warehouse.lake.tiers import expired_before

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class BatchStats:
    """What one run of the silver step did (row counts; bronze versions for :func:`ingest`)."""

    mode: str
    rows: int = 0
    valid: int = 0
    inserted: int = 0
    quarantined: int = 0
    quarantine_inserted: int = 0
    replayed: int = 0
    erased: int = 0
    expired: int = 0
    replaced_days: int = 0
    processes: int = 1
    engine: str = "local"
    bronze_from: int = -1
    bronze_to: int = -1
    bronze_latest: int = -1
    reasons: Counter[str] = field(default_factory=Counter)
    reason_types: Counter[str] = field(default_factory=Counter)
    bots: int = 0
    checks: list[CheckOutcome] = field(default_factory=list)
    silver_checks: list[CheckOutcome] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    """What the silver step applies: the bronze suite (a GE ``ExpectationSuite``) that splits rows,
    scrub rules and pseudonymization (its ``Scrubber`` and ``Pseudonymizer`` also count what they
    changed), and the silver suite checked on the rows written; ``parallel``: where the per-row
    stages run (processes on this host, or a Ray cluster)."""

    suite: Any
    scrubber: Scrubber
    pseudonymizer: Pseudonymizer
    silver_suite: Any
    parallel: Parallelism = Parallelism()


@dataclass(frozen=True)
class Split:
    """A micro-batch split by the bronze suite: the valid and invalid rows, why each invalid one
    failed, and the suite's outcomes."""

    valid: pl.DataFrame
    invalid: pl.DataFrame
    reasons: list[list[dict[str, Any]]]
    checks: list[CheckOutcome]


def prior_hashes(store: Lake, event_ids: pl.Series, exclude: pads.Expression | None = None) -> pl.DataFrame:
    """``(event_id, content_hash)`` of the silver rows with these ids (minus ``exclude``'s rows)."""
    ids = pa.array(event_ids.unique().to_list(), pa.string())
    flt = pads.field("event_id").isin(ids)
    if exclude is not None:
        flt = flt & ~exclude
    frame = pl.from_arrow(store.dataset(EVENTS).to_table(columns=["event_id", "content_hash"], filter=flt))
    assert isinstance(frame, pl.DataFrame)
    return frame


def silver_ids(store: Lake, event_ids: pl.Series) -> pl.DataFrame:
    """``(event_id, content_hash)`` of the silver rows with these ids, from silver's key index
    (:mod:`warehouse.lake.key_index`, brought up to silver's latest version first): point lookups,
    a cost flat in silver's size, where :func:`prior_hashes` scans every ``event_id`` of silver.
    Falls back to that scan while another process holds the index (same answer, slower).

    Raises:
        deltalake.exceptions.DeltaError: silver cannot be read.
    """
    try:
        index = shared_key_index(store.local_dir("index") / EVENTS.name, store, EVENTS, "event_id", "content_hash")
        index.sync()
        frame = pl.from_arrow(index.lookup(event_ids.to_arrow()))
    except IndexBusyError:
        log.warning("silver's key index is held by another process: scanning silver for the batch's ids")
        return prior_hashes(store, event_ids)
    assert isinstance(frame, pl.DataFrame)
    return frame


def validate(store: Lake, decoded: pl.DataFrame, suite: Any, prior: pl.DataFrame, run_id: str, pool: RowPool) -> Split:
    """Check consistency against ``prior`` silver rows and the type registry, validate with ``suite``
    (on ``pool``'s Ray cluster when it has one) and split; registers the first types of the valid
    rows' new properties."""
    known = known_types(store)
    checked, _ = transform.with_consistency(decoded, prior, known)
    rows = transform.validation_frame(checked)
    split = split_rows(pool.map(failed_checks, rows, suite, host_workers=False)[FAILED_CHECKS], suite)
    valid, invalid, reasons = transform.apply_split(checked, split)
    # Only rows that passed register a property's first type: a quarantined row never decides it.
    # Registered before silver is written, so a rerun after a crash sees the same registry.
    register(store, type_conflicts(valid, known)[1], run_id)
    return Split(valid, invalid, reasons, split.checks)


def count(stats: BatchStats, split: Split, silver: pa.Table, silver_checks: list[CheckOutcome]) -> None:
    """Add a split's and its silver rows' counts and outcomes to ``stats``."""
    stats.valid += split.valid.height
    stats.quarantined += split.invalid.height
    stats.reasons.update(r[0]["check"] for r in split.reasons)
    stats.reason_types.update(r[0]["reason"] for r in split.reasons)
    stats.bots += int(pc.sum(silver["is_bot"]).as_py() or 0)
    stats.checks = split.checks
    stats.silver_checks = silver_checks


def quarantine_and_build(store: Lake, rules: Rules, split: Split, run_id: str, pool: RowPool) -> tuple[int, pa.Table]:
    """Quarantine ``split``'s invalid rows (new event ids only) and build the silver rows of its valid
    ones; returns (quarantine rows inserted, silver rows)."""
    quarantine = transform.build_quarantine(
        split.invalid, split.reasons, rules.suite.name, run_id, datetime.now(UTC), rules.scrubber
    )
    inserted = store.insert_new(REJECTED_EVENTS, quarantine)
    return inserted, transform.build_silver(split.valid, run_id, rules.scrubber, rules.pseudonymizer, pool)


def write_checked(write: Callable[[], T], silver: pa.Table, silver_suite: Any) -> tuple[T, list[CheckOutcome]]:
    """Run ``write`` (the Delta commit of ``silver``) while the silver suite checks ``silver``.

    The Delta write runs in Rust and releases the GIL, so the two overlap on two cores. Returns
    ``write``'s result and the suite's outcomes; raises what either raises, after both ended.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="silver-write") as pool:
        written = pool.submit(write)
        frame = pl.from_arrow(silver.select(suite_columns(silver_suite)))
        assert isinstance(frame, pl.DataFrame)
        checks = split_by_suite(frame.to_pandas(), silver_suite).checks
        return written.result(), checks


#: (lake root, rules fingerprint) pairs whose tables this process has ensured: the property only
#: matters while a table is new, and the hot path's process would reopen both tables per micro-batch.
_ENSURED: set[tuple[str, str]] = set()


def ensure_tables(store: Lake, rules: Rules) -> None:
    """Create silver and the quarantine when missing, recording that their rows are scrubbed with
    ``rules``' scrub rules (:data:`pipelines.scrub_rules.RULES_PROPERTY`, set while a table is new).
    Once per lake root and rules in a process (each call opens both tables: 35 ms each at 150 versions)."""
    key = (store.root, rules.scrubber.rules.fingerprint)
    if key in _ENSURED:
        return
    for table in (EVENTS, REJECTED_EVENTS):
        store.ensure(table, {RULES_PROPERTY: rules.scrubber.rules.fingerprint})
    _ENSURED.add(key)


def without_erased(store: Lake, rules: Rules, decoded: pl.DataFrame) -> tuple[pl.DataFrame, int, list[int]]:
    """``decoded`` without the events of people erased before they arrived (their tombstones,
    :mod:`pipelines.erasure`), and how many were dropped: they reach neither silver nor the quarantine,
    and leave bronze (:func:`pipelines.erasure.delete_arrivals`: the bronze versions of its deletes
    are returned last)."""
    erased = dropped_events(decoded, load_tombstones(store, rules.pseudonymizer), rules.pseudonymizer)
    dropped = int(erased.sum())
    if not dropped:
        return decoded, 0, []
    log.info("dropped %d events of erased people", dropped)
    versions = delete_arrivals(store, decoded.filter(erased))
    return decoded.filter(~erased), dropped, versions


def within_retention(store: Lake, decoded: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """``decoded`` without the events older than the cold tier's expiry horizon
    (:func:`warehouse.lake.tiers.expired_before`), and how many were dropped: their day was deleted
    by retention, with the ids that would make a resent copy a duplicate, so admitting one would
    count it again (gold kept the day's counts)."""
    horizon = expired_before(store.cold, EVENTS) if store.cold is not None else None
    if horizon is None or decoded.height == 0:
        return decoded, 0
    old = pl.col("timestamp").dt.date() < date.fromisoformat(horizon)
    dropped = int(decoded.select(old.sum()).item())
    if dropped:
        log.info("dropped %d events older than the retention horizon %s", dropped, horizon)
    return decoded.filter(~old), dropped


def micro_batch_end(store: Lake, after: int, latest: int, max_rows: int) -> int:
    """Last bronze version of the next silver micro-batch: the longest run of whole commits after
    ``after`` (up to ``latest``) adding at most ``max_rows`` rows, and at least one commit however
    large (a commit is never split: the watermark is a version). ``after`` when nothing is new.
    Reads the commit log only up to the first commit past the bound.

    Raises:
        FileNotFoundError: a commit file after ``after`` is gone (see :func:`warehouse.lake.history.commit_rows`).
    """
    end, rows = after, 0
    for version, added in commit_rows(store, RAW_EVENTS, after, latest):
        if end > after and rows + added > max_rows:
            break
        end, rows = version, rows + added
    return end


def ingest(store: Lake, rules: Rules, run_id: str, max_rows: int) -> BatchStats:
    """Process bronze versions after silver's watermark, up to ``max_rows`` bronze rows (whole
    commits, see :func:`micro_batch_end`); the next run takes the rest of a backlog.

    Quarantine and silver are appended with an ``event_id`` anti-join, then the watermark moves:
    a run that dies midway is simply run again.
    """
    ensure_tables(store, rules)
    bronze_version = store.version(RAW_EVENTS)
    after = store.watermark(EVENTS.name, RAW_EVENTS.name)
    latest = after if bronze_version is None else bronze_version
    until = micro_batch_end(store, after, latest, max_rows)
    changes = change_stream(store, RAW_EVENTS, after, until).read_all()
    with RowPool(rules.parallel, changes.num_rows) as pool:
        decoded = transform.decode(changes, pool)
        rows = decoded.height
        decoded, expired = within_retention(store, decoded)
        decoded, erased, deletes = without_erased(store, rules, decoded)
        if deletes == list(range(until + 1, until + 1 + len(deletes))):
            # Nothing else was committed before silver's own deletes: silver has read them too, and
            # bronze's versions before them (holding the erased rows) are no one's any more.
            until = deletes[-1] if deletes else until
        stats = BatchStats(
            "ingest",
            rows=rows,
            erased=erased,
            expired=expired,
            bronze_from=after,
            bronze_to=until,
            bronze_latest=latest,
            processes=pool.processes,
            engine=pool.engine,
        )
        prior = silver_ids(store, decoded["event_id"])
        split = validate(store, decoded, rules.suite, prior, run_id, pool)
        stats.quarantine_inserted, silver = quarantine_and_build(store, rules, split, run_id, pool)
    # The ids already in silver were read for the conflict check: the anti-join reuses them.
    existing = prior["event_id"].to_arrow().cast(pa.string())
    stats.inserted, checks = write_checked(
        lambda: store.insert_new(EVENTS, silver, existing=existing), silver, rules.silver_suite
    )
    count(stats, split, silver, checks)
    if until > after:
        store.advance_watermark(EVENTS.name, RAW_EVENTS.name, until, run_id)
    return stats


def replay_quarantine(store: Lake, rules: Rules, run_id: str) -> BatchStats:
    """Re-validate quarantined rows not replayed yet; move those that now pass into silver.

    A row counts as replayed once it is recorded in ``quarantine_replays`` (after silver was
    written), so a crash in between only means the next run records it: silver's ``event_id``
    anti-join keeps it exactly once. Rows that still fail stay in quarantine untouched.
    """
    ensure_tables(store, rules)
    store.ensure(QUARANTINE_REPLAYS)
    quarantine = pl.from_arrow(store.dataset(REJECTED_EVENTS).to_table())
    replayed = pl.from_arrow(store.dataset(QUARANTINE_REPLAYS).to_table(columns=["event_id", "bronze_version"]))
    assert isinstance(quarantine, pl.DataFrame) and isinstance(replayed, pl.DataFrame)
    pending = quarantine.join(replayed, on=["event_id", "bronze_version"], how="anti")
    bronze_rows = pending.select(*RAW_EVENTS.schema.names, pl.col("bronze_version").alias("_commit_version"))
    with RowPool(rules.parallel, bronze_rows.height) as pool:
        decoded = transform.decode(bronze_rows.to_arrow().cast(_with_commit_version(RAW_EVENTS.schema)), pool)
        rows = decoded.height
        decoded, expired = within_retention(store, decoded)
        decoded, erased, _ = without_erased(store, rules, decoded)
        stats = BatchStats(
            "replay", rows=rows, erased=erased, expired=expired, processes=pool.processes, engine=pool.engine
        )
        prior = silver_ids(store, decoded["event_id"])
        split = validate(store, decoded, rules.suite, prior, run_id, pool)
        silver = transform.build_silver(split.valid, run_id, rules.scrubber, rules.pseudonymizer, pool)
    # The ids already in silver were read for the conflict check: the anti-join reuses them.
    existing = prior["event_id"].to_arrow().cast(pa.string())
    stats.inserted, checks = write_checked(
        lambda: store.insert_new(EVENTS, silver, existing=existing), silver, rules.silver_suite
    )
    count(stats, split, silver, checks)
    stats.replayed = record_replays(store, split.valid, run_id)
    return stats


def record_replays(store: Lake, kept: pl.DataFrame, run_id: str) -> int:
    """Record which rows of ``kept`` (now in silver) came out of quarantine; returns how many.

    Keyed by (event_id, bronze_version), the quarantine row's key; rows recorded before are skipped.
    """
    store.ensure(QUARANTINE_REPLAYS)
    keys = ["event_id", "bronze_version"]
    ids = pads.field("event_id").isin(pa.array(kept["event_id"].unique().to_list(), pa.string()))
    quarantined = pl.from_arrow(store.dataset(REJECTED_EVENTS).to_table(columns=keys, filter=ids))
    recorded = pl.from_arrow(store.dataset(QUARANTINE_REPLAYS).to_table(columns=keys, filter=ids))
    assert isinstance(quarantined, pl.DataFrame) and isinstance(recorded, pl.DataFrame)
    moved = kept.select(keys).join(quarantined, on=keys, how="semi").join(recorded, on=keys, how="anti")
    if moved.height:
        record = moved.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(datetime.now(UTC)).alias("replayed_at"))
        store.append(QUARANTINE_REPLAYS, record.to_arrow().cast(QUARANTINE_REPLAYS.schema))
    return moved.height


def _with_commit_version(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("_commit_version", pa.int64()))
