"""Rescrub: today's scrub rules applied, in place, to the rows already in silver and the quarantine,
and silver's derived columns added since the rows were written filled in from silver itself.

Rows keep the scrubbing of the rules they were written under. When the rules file changes, or a
release adds derived columns (:data:`pipelines.scrub_rules.DERIVATIONS_VERSION`), the fingerprint
:attr:`pipelines.scrub_rules.ScrubRules.fingerprint` differs from the one both tables record in the
table property :data:`RULES_PROPERTY`, and the ``rescrub_sensor`` starts the ``rescrub_lake`` job,
which:

1. :func:`rescrub` (the silver asset in mode ``rescrub``): reads each partition of silver
   (``event_date``) and of the quarantine (``received_date``), applies the rules
   (:func:`pipelines.transform.scrub_silver_columns` and the identifiers' pseudonyms, then
   :func:`pipelines.transform.backfill_derived`; :func:`pipelines.transform.scrub_quarantine_columns`)
   and, when any value changed or a file of the partition still carries statistics of other
   columns than the table's ``stats_columns``, replaces the partition in one commit (replaceWhere) whose metadata says
   ``eventlake.operation: rescrub``. Other partitions are not written, so a second run writes nothing.
   Silver's cold tier (:mod:`warehouse.lake.tiers`) is rescrubbed in place the same way;
2. the gold marts follow through silver's change data feed (the rewritten days), as after a
   reprocess, and the serving snapshot is published again. What the hot table's feed does not
   carry, :class:`GoldChanges` records in the gold warehouse for the next refresh: the reporting
   days of every rewritten row (``gold_recompute_days``, as an erasure's: the cold tier's days are
   recomputed too), data quality's outcome counts that changed in cold partitions (an asset flag
   filled in turns a ``valid`` row into an ``asset`` one), and that first-seen times are to be
   rechecked (:func:`pipelines.first_seen.recheck_first_seen`: a first visit that was a static-asset
   request moves to the person's first counted activity);
3. :func:`purge` (the ``purged_history`` asset): once every gold consumer has read both tables up
   to their current versions, removes the file versions and log entries from before
   (:func:`warehouse.lake.maintenance.purge_history`; silver's cold tier's too), then records the
   rules' fingerprint on both tables.

A crash at any point leaves every row exactly once (each partition's replacement is one atomic
commit; the log never holds half of one) and the next run finishes the job: the fingerprint is
recorded last. Gold's records are exact through a crash too, whatever the rules are by the next
run: a cold partition's count changes are recorded before its commit with the number of the
attempt, which the commit records atomically as an application transaction (Delta's ``txn``,
``eventlake.rescrub/<event_date>``), and are marked committed after it; the next rescrub first
settles what a crash left (:meth:`GoldChanges.settle`: committed when the table holds that
attempt's transaction, else dropped). Every rescrub gives all committed records, its own and those
an earlier one left, a silver version (:meth:`GoldChanges.finish`). Runs are serialized with every
other silver writer by the run queue.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from datetime import date

import duckdb
import polars as pl

from pipelines import transform
from pipelines.scrub_rules import RULES_PROPERTY
from pipelines.silver import BatchStats, Rules
from pipelines.validation import checks_by_part, suite_columns
from warehouse.gold import consumers_behind, load_sql, registered, transaction
from warehouse.lake.history import changed_partitions, partitions_with_stats
from warehouse.lake.maintenance import purge_history, set_table_properties, table_properties
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS, TableDef

log = logging.getLogger(__name__)

#: Commit metadata of a rescrub's partition replacements.
RESCRUB_COMMIT = {"eventlake.operation": "rescrub"}
#: The tables the rules apply to.
SCRUBBED_TABLES = (EVENTS, REJECTED_EVENTS)
#: Request ids of a rescrub's records in gold (``gold_recompute_days``, ``rescrub_count_changes``):
#: this prefix and the rules' fingerprint.
REQUEST_PREFIX = "rescrub:"
#: Silver's table property naming the last rescrub whose records gold was given a version for.
LAST_RESCRUB = "eventlake.lastRescrub"


def _attempts(day: date) -> str:
    """The application id (Delta ``txn``) whose version counts the rescrub commits of cold partition ``day``."""
    return f"eventlake.rescrub/{day.isoformat()}"


class GoldChanges:
    """What a rescrub changes that silver's change data feed does not tell gold, recorded in the
    gold warehouse ``con`` (its writer) for the marts' next refresh (module docstring, step 2).

    ``fingerprint``: the rules' (the request id is :data:`REQUEST_PREFIX` + it); ``timezone``: gold's
    reporting zone (IANA; the days recorded are reporting days); ``count_sql``: the data quality
    mart's ``select_silver_counts.sql`` (an outcome per row is defined there only; None: gold has no
    data quality mart).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, fingerprint: str, timezone: str, count_sql: str | None) -> None:
        self.con = con
        self.request_id = REQUEST_PREFIX + fingerprint
        self.timezone = timezone
        self.count_sql = count_sql

    def settle(self, cold: Lake | None) -> None:
        """What a crash left of the cold tier's count changes, under any rules: an attempt whose
        commit the ``cold`` tier holds (its ``txn`` version reached the attempt) is marked committed,
        any other is dropped (its partition was not rewritten)."""
        with transaction(self.con):
            for day, attempt in self.con.execute(load_sql("select_uncommitted_rescrub_counts")).fetchall():
                done = cold is not None and (cold.transaction_version(EVENTS, _attempts(day)) or 0) >= attempt
                settle = "commit_rescrub_counts" if done else "delete_rescrub_counts"
                self.con.execute(load_sql(settle), {"event_date": day, "attempt": attempt})

    def record(
        self, cold: bool, day: date, before: pl.DataFrame, after: pl.DataFrame, changed: pl.Series, attempt: int
    ) -> None:
        """Before partition ``day``'s rewrite is committed: the reporting days of its ``changed``
        rows (a boolean mask over ``before``/``after``, the partition's rows and their rescrubbed
        version, in the same order), pending; in the cold tier also data quality's count changes,
        with the ``attempt`` its commit records (:func:`_attempts`)."""
        old, new = before.filter(changed), after.filter(changed)
        rows = new.select("app", "source", "timestamp", "event_type", pl.lit("delete").alias("_change_type"))
        outcome = ["app", "source", "received_at", "is_bot", "is_asset"]
        counts = pl.concat(
            [
                old.select(*outcome, pl.lit("delete").alias("_change_type")),
                new.select(*outcome, pl.lit("insert").alias("_change_type")),
            ]
        )
        with registered(self.con, {"changed_rows": rows.to_arrow()}), transaction(self.con):
            days = self.con.sql(load_sql("select_changed_event_days"), params={"timezone": self.timezone})
            with registered(self.con, {"recorded_days": days.to_arrow_table()}):
                self.con.execute(load_sql("insert_recompute_days"), {"request_id": self.request_id})
            if cold and self.count_sql is not None:
                with registered(self.con, {"silver_count_changes": counts.to_arrow()}):
                    changes = self.con.sql(self.count_sql).to_arrow_table()
                with registered(self.con, {"count_changes": changes}):
                    self.con.execute(
                        load_sql("insert_rescrub_counts"),
                        {"request_id": self.request_id, "event_date": day, "attempt": attempt},
                    )

    def committed(self, day: date, attempt: int) -> None:
        """Cold partition ``day``'s rewrite of ``attempt`` is committed: its count changes count."""
        self.con.execute(load_sql("commit_rescrub_counts"), {"event_date": day, "attempt": attempt})

    def finish(self, store: Lake) -> int | None:
        """Give every rescrub's committed records still without one (this run's, and any an
        earlier run under other rules left) a silver version ahead of every gold watermark, the hot
        table's next, and make that version with one commit on the hot table (:data:`LAST_RESCRUB`)
        unless it exists already; returns the version, or None when no record waits for it. A crash
        before the commit is made good by the next rescrub's ``finish`` (or any commit on the table)."""
        current = store.version(EVENTS)
        now = -1 if current is None else current
        with transaction(self.con):
            self.con.execute(load_sql("delete_recomputed_days"))
            self.con.execute(load_sql("tie_rescrub_days"), {"silver_version": now + 1})
            self.con.execute(load_sql("tie_rescrub_counts"), {"silver_version": now + 1})
            ((waiting,),) = self.con.execute(load_sql("select_rescrubs_ahead"), {"silver_version": now}).fetchall()
        if not waiting:
            return None
        made = set_table_properties(store, EVENTS, {LAST_RESCRUB: self.request_id})
        log.info("rescrub %s: %d records for gold at silver v%d", self.request_id, waiting, made)
        return made


def pending_tables(store: Lake, fingerprint: str) -> list[TableDef]:
    """The tables of :data:`SCRUBBED_TABLES` that exist and do not record ``fingerprint`` (a table
    created under the current rules records it from its first commit, see :meth:`Lake.ensure`)."""
    return [
        table
        for table in SCRUBBED_TABLES
        if (properties := table_properties(store, table)) is not None and properties.get(RULES_PROPERTY) != fingerprint
    ]


def _rewritten(
    store: Lake,
    table: TableDef,
    scrub: Callable[[pl.DataFrame], pl.DataFrame],
    stats: BatchStats,
    gold: GoldChanges | None = None,
    cold: bool = False,
) -> Iterator[pl.DataFrame]:
    """Rescrub ``table`` in ``store``'s tier (a cold tier is a ``Lake`` of its own, ``cold``)
    partition by partition; yields each rewritten partition's new rows after its commit (one
    partition in memory at a time). A partition is rewritten when a value changes, or when one of its
    files carries statistics of a column outside ``table.stats_columns`` (written before the table
    restricted them: the log would keep copying those values). ``gold``: silver's changes are
    recorded there around each commit (:class:`GoldChanges`)."""
    written = store.version(table)
    if written is None:
        return
    column = table.partition_by[0]
    # Before ensure(): once the table restricts its statistics columns, its files' others are not read.
    stale = set(partitions_with_stats(store, table, written, exclude=table.stats_columns).to_pylist())
    store.ensure(table)  # a tier an older release wrote gets the columns added since (its rows read null)
    version = store.version(table)
    assert version is not None
    for day in sorted(changed_partitions(store, table, -1, version).to_pylist()):
        frame = pl.from_arrow(store.dataset(table, version, files=((column, "=", day),), cold=False).to_table())
        assert isinstance(frame, pl.DataFrame)
        stats.rows += frame.height
        scrubbed = scrub(frame)
        mask = frame.hash_rows() != scrubbed.hash_rows()
        changed = int(mask.sum())
        if not changed and day not in stale:
            continue
        # Cold count changes: the commit records the attempt they were recorded with (GoldChanges.settle).
        counted = gold is not None and changed > 0 and cold and table is EVENTS
        attempt = (store.transaction_version(table, _attempts(day)) or 0) + 1 if counted else 0
        if gold is not None and changed:
            gold.record(cold, day, frame, scrubbed, mask, attempt)
        store.replace_where(
            table,
            scrubbed.to_arrow(),
            f"{column} = '{day.isoformat()}'",
            metadata=RESCRUB_COMMIT,
            transaction=(_attempts(day), attempt) if counted else None,
        )
        if gold is not None and counted:
            gold.committed(day, attempt)
        if table is EVENTS:
            stats.replaced_days += 1
            stats.inserted += changed
        else:
            stats.quarantine_inserted += changed
        log.info("rescrub %s %s=%s: %d of %d rows changed", table.name, column, day, changed, frame.height)
        yield scrubbed


def rescrub(store: Lake, rules: Rules, gold: GoldChanges | None = None) -> BatchStats:
    """Apply the scrub rules (and pseudonyms) of ``rules`` to every partition of silver and the
    quarantine, rewriting only the partitions where a value changes; idempotent. ``gold``: where
    silver's changes are recorded for gold (:class:`GoldChanges`; None: not at all, as for a lake
    without a warehouse).

    The returned stats count rows read (``rows``), silver partitions rewritten (``replaced_days``),
    silver and quarantine rows changed (``inserted``, ``quarantine_inserted``) and the silver suite's
    outcomes on the rewritten partitions (``silver_checks``).

    Raises:
        deltalake.exceptions.DeltaError: a commit failed (partitions committed before stay
            rewritten; running it again goes on with the rest).
    """
    stats = BatchStats("rescrub")

    def silver_rows(frame: pl.DataFrame) -> pl.DataFrame:
        scrubbed = transform.scrub_silver_columns(frame, rules.scrubber)
        return transform.backfill_derived(transform.pseudonymize_columns(scrubbed, rules.pseudonymizer))

    columns = suite_columns(rules.silver_suite)
    tiers = [store, *([store.cold] if store.cold is not None else [])]
    if gold is not None:
        gold.settle(store.cold)
    stats.silver_checks = checks_by_part(
        (
            frame.select(columns).to_pandas()
            for tier in tiers
            for frame in _rewritten(tier, EVENTS, silver_rows, stats, gold, cold=tier is store.cold)
        ),
        rules.silver_suite,
    )
    quarantine = _rewritten(
        store, REJECTED_EVENTS, lambda frame: transform.scrub_quarantine_columns(frame, rules.scrubber), stats
    )
    deque(quarantine, maxlen=0)  # each partition commits as the generator goes; nothing to check
    if gold is not None:
        gold.finish(store)
    return stats


class ConsumersBehindError(RuntimeError):
    """A gold consumer has not read silver or the quarantine up to their current versions yet."""


def purge(store: Lake, con: duckdb.DuckDBPyConnection, fingerprint: str) -> dict[str, tuple[int, int]]:
    """Remove the old file versions and log entries of silver and the quarantine, then record that
    every row of both was scrubbed with the rules ``fingerprint``.

    Returns ``{table: (files removed, log files removed)}``.

    Raises:
        ConsumersBehindError: a gold mart's watermark is before a table's current version (its
            change feed would need what the purge removes): refresh gold first.
    """
    silver_version = store.version(EVENTS)
    quarantine_version = store.version(REJECTED_EVENTS)
    behind = consumers_behind(
        con, -1 if silver_version is None else silver_version, -1 if quarantine_version is None else quarantine_version
    )
    if behind:
        raise ConsumersBehindError(
            f"not purging: gold has not read silver v{silver_version} / quarantine v{quarantine_version} yet: "
            + ", ".join(f"{mart} (silver v{s}, quarantine v{q})" for mart, s, q in behind)
        )
    tiers = [(store, table) for table in SCRUBBED_TABLES]
    if store.cold is not None and store.cold.version(EVENTS) is not None:
        tiers.append((store.cold, EVENTS))
    purged = {
        f"{'cold_' if tier is store.cold else ''}{table.name}": purge_history(tier, table) for tier, table in tiers
    }
    for tier, table in tiers:
        if tier.version(table) is not None:  # recorded last: a crash before it means run again
            set_table_properties(tier, table, {RULES_PROPERTY: fingerprint})
    return purged
