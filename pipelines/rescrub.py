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
   reprocess, and the serving snapshot is published again (not yet for the days of the cold tier,
   whose changes the hot table's feed does not carry: docs/lifecycle.md, "Not built yet");
3. :func:`purge` (the ``purged_history`` asset): once every gold consumer has read both tables up
   to their current versions, removes the file versions and log entries from before
   (:func:`warehouse.lake.maintenance.purge_history`; silver's cold tier's too), then records the
   rules' fingerprint on both tables.

A crash at any point leaves every row exactly once (each partition's replacement is one atomic
commit; the log never holds half of one) and the next run finishes the job: the fingerprint is
recorded last. Runs are serialized with every other silver writer by the run queue.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator

import duckdb
import polars as pl

from pipelines import transform
from pipelines.scrub_rules import RULES_PROPERTY
from pipelines.silver import BatchStats, Rules
from pipelines.validation import checks_by_part, suite_columns
from warehouse.gold import consumers_behind
from warehouse.lake.history import changed_partitions, partitions_with_stats
from warehouse.lake.maintenance import purge_history, set_table_properties, table_properties
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS, TableDef

log = logging.getLogger(__name__)

#: Commit metadata of a rescrub's partition replacements.
RESCRUB_COMMIT = {"eventlake.operation": "rescrub"}
#: The tables the rules apply to.
SCRUBBED_TABLES = (EVENTS, REJECTED_EVENTS)


def pending_tables(store: Lake, fingerprint: str) -> list[TableDef]:
    """The tables of :data:`SCRUBBED_TABLES` that exist and do not record ``fingerprint`` (a table
    created under the current rules records it from its first commit, see :meth:`Lake.ensure`)."""
    return [
        table
        for table in SCRUBBED_TABLES
        if (properties := table_properties(store, table)) is not None and properties.get(RULES_PROPERTY) != fingerprint
    ]


def _rewritten(
    store: Lake, table: TableDef, scrub: Callable[[pl.DataFrame], pl.DataFrame], stats: BatchStats
) -> Iterator[pl.DataFrame]:
    """Rescrub ``table`` in ``store``'s tier (a cold tier is a ``Lake`` of its own) partition by
    partition; yields each rewritten partition's new rows after its commit (one partition in memory
    at a time). A partition is rewritten when a value changes, or when one of its files carries
    statistics of a column outside ``table.stats_columns`` (written before the table restricted
    them: the log would keep copying those values)."""
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
        changed = int((frame.hash_rows() != scrubbed.hash_rows()).sum())
        if not changed and day not in stale:
            continue
        store.replace_where(table, scrubbed.to_arrow(), f"{column} = '{day.isoformat()}'", metadata=RESCRUB_COMMIT)
        if table is EVENTS:
            stats.replaced_days += 1
            stats.inserted += changed
        else:
            stats.quarantine_inserted += changed
        log.info("rescrub %s %s=%s: %d of %d rows changed", table.name, column, day, changed, frame.height)
        yield scrubbed


def rescrub(store: Lake, rules: Rules) -> BatchStats:
    """Apply the scrub rules (and pseudonyms) of ``rules`` to every partition of silver and the
    quarantine, rewriting only the partitions where a value changes; idempotent.

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
    stats.silver_checks = checks_by_part(
        (frame.select(columns).to_pandas() for tier in tiers for frame in _rewritten(tier, EVENTS, silver_rows, stats)),
        rules.silver_suite,
    )
    quarantine = _rewritten(
        store, REJECTED_EVENTS, lambda frame: transform.scrub_quarantine_columns(frame, rules.scrubber), stats
    )
    deque(quarantine, maxlen=0)  # each partition commits as the generator goes; nothing to check
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
