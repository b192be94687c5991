"""The lake's maintenance: per table, compaction of its closed partitions, a checkpoint, the expiry of
old log entries and a vacuum of unreferenced files, never past what a consumer still reads.

A consumer's floor is the lowest version it has processed (its watermark): silver's of bronze (the
lake's watermarks table), the gold marts' and shared state's of silver, bronze and the quarantine
(``gold_watermarks``, read from the serving snapshot: it lags the warehouse, never leads it, and
reading it never waits for the warehouse's write lock). Tables no one reads incrementally (the
state tables) have their latest version as floor. See :mod:`warehouse.lake.maintenance` for what
each step keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines.erasure import purge_pending
from warehouse.gold import served_consumer_floor
from warehouse.lake.maintenance import TableState, checkpoint, compact_closed, expire_log, table_state, vacuum
from warehouse.lake.store import Lake
from warehouse.lake.tables import (
    ERASURE_PENDING,
    ERASURE_TOMBSTONES,
    ERASURES,
    EVENTS,
    PROPERTY_TYPES,
    QUARANTINE_REPLAYS,
    RAW_EVENTS,
    REJECTED_EVENTS,
    USER_ATTRIBUTES,
    WATERMARKS,
    TableDef,
)
from warehouse.lake.tiers import MoveReport, TierPolicy, expire_older, move_older, tier_states

#: Every lake table maintenance looks after, in order.
MAINTAINED = (
    RAW_EVENTS,
    EVENTS,
    REJECTED_EVENTS,
    QUARANTINE_REPLAYS,
    USER_ATTRIBUTES,
    WATERMARKS,
    PROPERTY_TYPES,
    ERASURE_TOMBSTONES,
    ERASURES,
    ERASURE_PENDING,
)
#: The cold tier's log entries are kept at least this long: silver's key index follows the deletes of
#: its few commits a day (retention, erasure) and rebuilds from both tiers when they are gone.
COLD_LOG_RETENTION = timedelta(days=1)
#: The tables consumers read incrementally (a change feed after their watermark, or a version).
CONSUMED = (RAW_EVENTS, EVENTS, REJECTED_EVENTS)


@dataclass(frozen=True)
class MaintenancePolicy:
    """How maintenance treats the tables.

    ``retention``: the vacuum's margin: a file no version from the floor on reads is deleted once it
    was written this long before the floor's version (:func:`warehouse.lake.maintenance.vacuum`);
    ``log_retention``: how long log entries a consumer no longer needs are kept (time travel); short,
    because every commit and every poll of a table on a local disk lists its whole ``_delta_log``
    (an append cost 8 ms with 100 log files, 28 ms with 2,900 and 57 ms with 7,000);
    ``target_file_bytes``: the size compaction writes; ``open_days``: silver partitions (by event
    day, UTC) younger than this many days stay open for late events and are not compacted (bronze
    and the quarantine, by received day, close at midnight UTC).
    """

    retention: timedelta
    log_retention: timedelta
    target_file_bytes: int
    open_days: int


@dataclass(frozen=True)
class TableReport:
    """What maintaining one table (in one tier, ``hot`` or ``cold``) did: its size before and after,
    the partitions compacted, the files vacuumed and log files expired, and the floor that bounded them."""

    table: str
    tier: str
    before: TableState
    after: TableState
    compacted: list[str]
    vacuumed: int
    expired_logs: int
    floor: int


def consumer_floors(lake: Lake, serving: Path) -> dict[str, int]:
    """The lowest version of each lake table any consumer still builds or reads the changes after,
    by table name (``-1``: keep everything, e.g. before the first serving snapshot)."""
    silver_of_bronze = lake.watermark(EVENTS.name, RAW_EVENTS.name)
    row = served_consumer_floor(serving) or (None, None, None)
    silver, bronze, quarantine = row
    return {
        RAW_EVENTS.name: min(silver_of_bronze, bronze) if bronze is not None else -1,
        EVENTS.name: silver if silver is not None else -1,
        REJECTED_EVENTS.name: quarantine if quarantine is not None else -1,
    }


def maintain(
    lake: Lake, table: TableDef, floor: int | None, policy: MaintenancePolicy, today: date, tier: str = "hot"
) -> TableReport | None:
    """Compact ``table``'s closed partitions, checkpoint it, expire its log and vacuum it, keeping
    what a consumer at ``floor`` needs (``None``: no consumer, the latest version;
    :mod:`warehouse.lake.maintenance`); ``None`` when the table does not exist. ``tier``: which of
    the lake's tiers ``lake`` is (``hot`` or ``cold``), for the report.

    Raises:
        deltalake.exceptions.DeltaError: a step failed (after retries on commit conflicts); the
            steps done stay done and the next run goes on from there.
    """
    before = table_state(lake, table)
    if before is None:
        return None
    closed_before: object = today - timedelta(days=policy.open_days) if table is EVENTS else today
    compacted = compact_closed(lake, table, closed_before, policy.target_file_bytes) if table.partition_by else []
    latest = checkpoint(lake, table)
    keep_from = (latest if latest is not None else before.version) if floor is None else floor
    vacuumed = vacuum(lake, table, keep_from, policy.retention)
    expired = expire_log(lake, table, keep_from, policy.log_retention)
    after = table_state(lake, table) or before
    return TableReport(table.name, tier, before, after, compacted, len(vacuumed), expired, keep_from)


def maintain_lake(lake: Lake, serving: Path, policy: MaintenancePolicy) -> list[TableReport]:
    """:func:`maintain` every table of :data:`MAINTAINED` with its consumers' floor (state tables:
    their latest version), then silver's cold tier (its latest version: only silver's key index reads
    its changes, which keeps a day of its log, :data:`COLD_LOG_RETENTION`)."""
    floors = consumer_floors(lake, serving)
    today = datetime.now(UTC).date()
    reports = []
    for table in MAINTAINED:
        floor = floors.get(table.name, -1) if table in CONSUMED else None
        report = maintain(lake, table, floor, policy, today)
        if report is not None:
            reports.append(report)
    if lake.cold is not None:
        cold_policy = replace(policy, log_retention=max(policy.log_retention, COLD_LOG_RETENTION))
        report = maintain(lake.cold, EVENTS, None, cold_policy, today, tier="cold")
        if report is not None:
            reports.append(report)
    return reports


def expire_consumed_bronze(lake: Lake, serving: Path, log_retention: timedelta) -> int:
    """Expire bronze's log entries that every consumer has read (:func:`consumer_floors`) and that are
    older than ``log_retention``; how many log files were deleted. The hot path calls it after each
    micro-batch: bronze commits up to ~20 times a second, far too often for the maintenance
    schedule to keep its log short, and each of its commits lists the whole log. A consumer that
    stops (the hot path down) stops the expiry with it, so nothing it has not read is ever expired.
    """
    floor = consumer_floors(lake, serving)[RAW_EVENTS.name]
    return expire_log(lake, RAW_EVENTS, floor, log_retention) if floor >= 0 else 0


@dataclass(frozen=True)
class TierReport:
    """What one tiering run did: silver's partitions moved to the cold tier, the partitions expired
    per table (``cold_events``: silver's, from the cold tier), each tier's size after, and the bronze
    rows of erased people deleted now that their received day is over (:func:`pipelines.erasure.purge_pending`)."""

    moved: list[MoveReport]
    expired: dict[str, list[str]]
    states: dict[str, TableState | None]
    erased_bronze_rows: int = 0


def tier_lake(lake: Lake, serving: Path, policy: TierPolicy, today: date) -> TierReport:
    """Delete the erased people's bronze rows whose received day is over, then apply the tier and
    retention ``policy`` (whole UTC days before ``today``): move silver's old
    partitions to the cold tier (:func:`warehouse.lake.tiers.move_older`), then delete silver's cold
    partitions, bronze's and the quarantine's received days past their retention, these two only
    once every consumer has read them (:func:`consumer_floors`).

    Callers serialize it with silver's writers (it runs in the pipeline's code location).

    Raises:
        warehouse.lake.tiers.TierMoveError: a partition could not be moved (the older ones were).
        deltalake.exceptions.DeltaError: a commit failed; the next run goes on.
    """
    purged = purge_pending(lake, today)
    moved = move_older(lake, EVENTS, today - timedelta(days=policy.hot_days))
    floors = consumer_floors(lake, serving)
    expired: dict[str, list[str]] = {}
    if policy.cold_days and lake.cold is not None:
        expired["cold_events"] = expire_older(lake.cold, EVENTS, today - timedelta(days=policy.cold_days), None)
    for table, days in ((RAW_EVENTS, policy.bronze_ttl_days), (REJECTED_EVENTS, policy.quarantine_ttl_days)):
        if days:
            expired[table.name] = expire_older(lake, table, today - timedelta(days=days), floors[table.name])
    return TierReport(moved, expired, tier_states(lake, EVENTS), purged)
