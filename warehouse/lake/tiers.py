"""The lake's tiers and retention: old partitions of a tiered table (silver) move from the hot root to
the cold root, and partitions past their retention are deleted (docs/lifecycle.md, "Tiers and retention").

The move of one partition (:func:`move_partition`) is crash-safe with no state beyond the two
tables' own logs: it writes the partition's rows to cold, verifies that cold holds every row of the
hot partition (count and checksum), and only then deletes it from hot; the copy and the delete each
record a Delta transaction identifier, so a move that stopped after its copy is told apart from late
rows that reached a day moved before (only the former reads cold's partition again). A crash between
any two steps leaves the rows in hot, and perhaps in cold too, and running the move again finishes
it; readers never see a row twice meanwhile (:func:`warehouse.lake.store.tier_union` leaves out
cold's copies of keys hot still holds). Its commits, like every expiry's, carry
:data:`warehouse.lake.history.LIFECYCLE_KEY`: change-feed readers skip them, so gold keeps the days
that moved or expired. Writers of the tiered table are serialized with the move (the runs of one
code location, one at a time): a partition that changed between the copy and the delete is left in
hot (:class:`TierMoveError`) and moved by the next run.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties

from warehouse.lake.history import LIFECYCLE_KEY, commit_summaries
from warehouse.lake.maintenance import AutoCompactor, TableState, set_table_properties, table_properties, table_state
from warehouse.lake.store import Lake, arrow_dataset
from warehouse.lake.tables import TableDef

log = logging.getLogger(__name__)


#: The application id (before ``/<partition>``) of a move's transactions (:func:`move_partition`).
MOVE_APP = "eventlake.move"

#: The table property recording the day before which partitions were expired (:func:`expired_before`).
EXPIRED_BEFORE = "eventlake.expiredBefore"


class TierMoveError(RuntimeError):
    """A partition's move stopped before deleting it from hot (cold's copy differs, or hot changed
    meanwhile); the rows stay in hot, every row once, and the next run tries again."""


@dataclass(frozen=True)
class TierPolicy:
    """How long data stays in each tier, in whole UTC days.

    ``hot_days``: a tiered table's partitions (event days) older than this move to the cold tier;
    ``cold_days``: they are deleted from cold once older than this (0: kept for ever);
    ``bronze_ttl_days`` and ``quarantine_ttl_days``: bronze's and the quarantine's received days
    older than this are deleted, once every consumer has read them (0: kept for ever).
    """

    hot_days: int
    cold_days: int
    bronze_ttl_days: int
    quarantine_ttl_days: int

    def __post_init__(self) -> None:
        """Raises ValueError: a horizon below 1 day, or a cold one that deletes days as they move."""
        if self.hot_days < 1:
            raise ValueError(f"hot_days must be at least 1 (got {self.hot_days})")
        if self.cold_days and self.cold_days <= self.hot_days:
            raise ValueError(
                f"cold_days ({self.cold_days}) must be more than hot_days ({self.hot_days}), or 0 (kept for ever): "
                "else days are deleted as soon as they move"
            )


@dataclass(frozen=True)
class MoveReport:
    """One partition's move: its value, the rows it held in hot, how many of them this run copied
    (fewer when an earlier, interrupted run had copied them), and the hot and cold versions of the
    delete and the copy (the copy's is None when nothing was left to copy)."""

    partition: str
    rows: int
    copied: int
    hot_version: int
    cold_version: int | None


def tiered_lake(
    hot_root: str,
    cold_root: str,
    cold_level: int,
    cold_target_mb: int,
    compactor: AutoCompactor | None = None,
    storage_options: dict[str, str] | None = None,
) -> Lake:
    """The lake at ``hot_root`` (``compactor``: see :class:`warehouse.lake.store.Lake`) with its cold
    tier at ``cold_root``, whose files are zstd-compressed at ``cold_level`` and ``cold_target_mb`` MB.
    ``storage_options``: delta-rs's, for object-store roots (both tiers).

    Raises:
        ValueError: the roots are the same, or one is inside the other (:func:`check_roots`).
    """
    check_roots(hot_root, cold_root)
    cold = Lake(
        cold_root,
        storage_options=storage_options,
        writer=WriterProperties(compression="ZSTD", compression_level=cold_level),
        target_file_bytes=cold_target_mb * 1024 * 1024,
    )
    return Lake(hot_root, storage_options=storage_options, compactor=compactor, cold=cold)


def check_roots(hot_root: str, cold_root: str) -> None:
    """Refuse a cold root that is the hot root or inside it, or the other way round: a move would
    find its rows "already in cold" and delete them, or a vacuum of one tier would delete the other's
    files (it deletes every file under a table's folder that its log does not list).

    Raises:
        ValueError: naming both roots.
    """
    hot, cold = (_normalized(root) for root in (hot_root, cold_root))
    if hot == cold or cold.startswith(hot + "/") or hot.startswith(cold + "/"):
        raise ValueError(
            f"the cold root {cold_root!r} and the hot root {hot_root!r} overlap: give the cold tier a folder "
            "or bucket of its own (EVENTLAKE_COLD_URI)"
        )


def _normalized(root: str) -> str:
    """``root`` as an absolute path without ``file://`` and trailing slashes (URIs of other schemes as
    given, lowercased scheme)."""
    scheme, sep, rest = root.partition("://")
    if not sep or scheme.lower() == "file":
        return os.path.abspath(os.path.normpath(rest if sep else root))
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def _partition_values(dt: DeltaTable, column: str) -> list[str]:
    """The values (as text) of partition ``column`` of ``dt``'s files, sorted."""
    values = pa.table(dt.get_add_actions(flatten=True))[f"partition.{column}"]
    return sorted({str(value) for value in pc.unique(values).to_pylist() if value is not None})


def _files_of(dt: DeltaTable, column: str, value: str) -> set[str]:
    """The paths of ``dt``'s files in partition ``column`` = ``value``."""
    actions = pa.table(dt.get_add_actions(flatten=True)).select(["path", f"partition.{column}"])
    in_partition = pc.equal(actions[f"partition.{column}"].cast(pa.string()), value)
    return set(actions.filter(in_partition)["path"].to_pylist())


def checksum(rows: pa.Table) -> tuple[int, int]:
    """``(rows, sum of every row's hash)`` of ``rows``: equal for two tables holding the same rows in
    any order. The hash is DuckDB's ``hash`` of the whole row (a struct), summed as a HUGEINT."""
    con = duckdb.connect()
    try:
        con.register("rows_to_check", rows)
        [(count, total)] = con.execute("select count(*), coalesce(sum(hash(r)), 0) from rows_to_check r").fetchall()
    finally:
        con.close()
    return int(count), int(total)


def move_partition(lake: Lake, table: TableDef, value: str) -> MoveReport:
    """Move partition ``value`` (of ``table``'s first partition column, as text) from ``lake``'s hot
    root to its cold tier, crash-safe (see the module's docstring):

    1. read the hot partition at the table's latest version;
    2. write it to cold's partition in one commit (:func:`_copy`);
    3. verify that cold holds it (count and checksum, :func:`_verify`);
    4. delete the partition from hot in one commit, provided its files are still those of step 1.

    Steps 2 and 4 are lifecycle commits (``eventlake.lifecycle = move``, with the move's id, the
    partition and the hot version copied), and both record the application transaction
    ``(eventlake.move/<partition>, hot version copied)`` (:func:`warehouse.lake.store.commit_properties`).
    Equal transaction versions in the two tiers mean the last move of the partition finished: the
    rows now in hot are new to cold (late events), so step 2 appends them and step 3 reads only the
    files it added, whatever the cold day holds. Different ones mean a move stopped between its copy
    and its delete: step 2 then reconciles with cold's partition and step 3 reads every row of it
    with the moved keys. Idempotent; a partition not in hot is a no-op.

    Raises:
        TierMoveError: cold's copy differs from hot, or hot's partition changed meanwhile (hot kept).
        ValueError: ``table`` is not tiered or the lake has no cold tier.
        deltalake.exceptions.DeltaError: a commit failed (run again to finish).
    """
    if not table.tiered or lake.cold is None or table.key is None:
        raise ValueError(f"{table.name} cannot move to a cold tier (not tiered, or the lake has none)")
    column = table.partition_by[0]
    hot = lake.open(table)
    if hot is None or not _files_of(hot, column, value):
        return MoveReport(value, 0, 0, -1 if hot is None else hot.version(), None)
    hot_version = hot.version()
    files = _files_of(hot, column, value)
    rows = lake.dataset(table, hot_version, ((column, "=", value),), cold=False).to_table()
    metadata = {
        LIFECYCLE_KEY: "move",
        "eventlake.move": uuid.uuid4().hex,
        "eventlake.partition": value,
        "eventlake.hot_version": str(hot_version),
    }
    app = f"{MOVE_APP}/{value}"
    copied_before = lake.cold.transaction_version(table, app)
    stopped = copied_before != hot.transaction_version(app)  # a move stopped after its copy
    properties = {k: v for k, v in hot.metadata().configuration.items() if k.startswith("eventlake.")}
    copied, cold_version = _copy(lake.cold, table, rows, value, metadata, properties, (app, hot_version), stopped)
    _verify(lake.cold, table, rows, value, None if stopped else cold_version)
    done = hot_version if cold_version is not None else copied_before

    def unchanged(latest: DeltaTable) -> None:
        if _files_of(latest, column, value) != files:
            raise TierMoveError(f"{table.name} {column}={value} changed in hot since v{hot_version}; not deleted")

    deleted = lake.delete_where(
        table, f"{column} = '{value}'", metadata, check=unchanged, transaction=None if done is None else (app, done)
    )
    log.info(
        "%s %s=%s: %d rows moved to cold (%d copied now), hot v%d",
        table.name,
        column,
        value,
        rows.num_rows,
        copied,
        deleted,
    )
    return MoveReport(value, rows.num_rows, copied, deleted, cold_version)


def _copy(
    cold: Lake,
    table: TableDef,
    rows: pa.Table,
    value: str,
    metadata: dict[str, str],
    properties: dict[str, str],
    transaction: tuple[str, int],
    stopped: bool,
) -> tuple[int, int | None]:
    """Make ``cold``'s partition ``value`` hold ``rows`` (the hot partition), in one commit that
    records ``transaction``. Appended when no move of the partition stopped after its copy
    (``stopped`` false: cold holds none of the keys; its partition is not read). Else, unless cold
    already holds the rows exactly (the stopped move's copy, nothing written), the partition is
    rewritten as its other rows plus ``rows`` (hot's version of a row wins: hot's partition may
    have changed since the stopped copy). ``properties``: the hot table's own (``eventlake.*``)
    properties, given to the cold table when it is created. Returns ``(rows written, the commit's
    version)``, ``(0, None)`` when nothing was."""
    import pyarrow.dataset as pads  # noqa: PLC0415 (imports pandas: see warehouse.lake.store)

    column, key = table.partition_by[0], table.key
    assert key is not None
    cold.ensure(table, properties)
    if not stopped:
        return rows.num_rows, cold.append(table, rows, metadata, transaction)
    partition = cold.dataset(table, None, ((column, "=", value),))
    if partition.count_rows(filter=pads.field(key).isin(rows[key])) == 0:
        return rows.num_rows, cold.append(table, rows, metadata, transaction)
    held = partition.to_table(filter=pads.field(key).isin(rows[key])).select(rows.column_names).cast(rows.schema)
    if checksum(held) == checksum(rows):
        return 0, None
    others = partition.to_table(filter=~pads.field(key).isin(rows[key])).select(rows.column_names).cast(rows.schema)
    rewritten = pa.concat_tables([others, rows])
    return rows.num_rows, cold.replace_where(table, rewritten, f"{column} = '{value}'", metadata, transaction)


def _verify(cold: Lake, table: TableDef, rows: pa.Table, value: str, added_in: int | None) -> None:
    """Check that ``cold``'s partition ``value`` holds ``rows`` exactly: the rows of the files cold's
    commit ``added_in`` added to the partition, or (``None``) its rows with ``rows``' keys.

    Raises:
        TierMoveError: a row is missing or differs.
    """
    import pyarrow.dataset as pads  # noqa: PLC0415 (imports pandas: see warehouse.lake.store)

    column, key = table.partition_by[0], table.key
    assert key is not None
    if added_in is None:
        copies = cold.dataset(table, None, ((column, "=", value),)).to_table(filter=pads.field(key).isin(rows[key]))
    else:
        copies = _added_rows(cold, table, column, value, added_in)
    expected, found = checksum(rows), checksum(copies.select(rows.column_names).cast(rows.schema))
    if expected != found:
        raise TierMoveError(
            f"{table.name} {column}={value}: cold holds {found[0]} of the {expected[0]} rows (or they differ); "
            "not deleted"
        )


def _added_rows(lake: Lake, table: TableDef, column: str, value: str, version: int) -> pa.Table:
    """The rows of the files ``lake``'s commit ``version`` added to partition ``column`` = ``value``
    (the files it holds then that it did not hold the version before). Empty when that commit
    added none there, e.g. it was a store's lost write."""
    import pyarrow.dataset as pads  # noqa: PLC0415 (imports pandas: see warehouse.lake.store)

    after, before = lake.open(table, version), lake.open(table, version - 1) if version else None
    if after is None:
        return table.schema.empty_table()
    added = _files_of(after, column, value) - (set() if before is None else _files_of(before, column, value))
    dataset = arrow_dataset(after, ((column, "=", value),))
    fragments = [fragment for fragment in dataset.get_fragments() if fragment.path in added]
    return pads.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table()


def move_older(lake: Lake, table: TableDef, before: date) -> list[MoveReport]:
    """:func:`move_partition` every partition of ``table`` in hot before ``before``, oldest first.

    Raises:
        TierMoveError: a partition could not be moved (those before it are).
    """
    hot = lake.open(table)
    if hot is None:
        return []
    column = table.partition_by[0]
    return [
        move_partition(lake, table, value)
        for value in _partition_values(hot, column)
        if date.fromisoformat(value) < before
    ]


def expire_older(lake: Lake, table: TableDef, before: date, floor: int | None) -> list[str]:
    """Delete ``table``'s partitions before ``before`` in one lifecycle commit (``eventlake.lifecycle
    = expire``: change-feed readers skip it), leaving those a commit after ``floor`` (the slowest
    consumer's version) changed: a consumer has not read them yet. ``floor`` None: nobody consumes
    the table; -1: a consumer has read nothing (nothing expires). Returns the partitions deleted.
    The day after the latest one deleted is recorded first, as the table property
    :data:`EXPIRED_BEFORE` (:func:`expired_before`).

    Raises:
        deltalake.exceptions.DeltaError: the commit failed (run again).
    """
    dt = lake.open(table)
    if dt is None or (floor is not None and floor < 0):
        return []
    column = table.partition_by[0]
    old = [value for value in _partition_values(dt, column) if date.fromisoformat(value) < before]
    if not old:
        return []
    if floor is not None:
        try:
            unread = {
                value
                for _, summary in commit_summaries(lake, table, floor, dt.version())
                if summary.lifecycle is None
                for value in summary.partitions
            }
        except FileNotFoundError:  # the commits after the floor cannot be read: keep everything
            log.warning("%s: the log after v%d is gone; nothing expired", table.name, floor)
            return []
        old = [value for value in old if value not in unread]
    if not old:
        return []
    listed = ", ".join(f"'{value}'" for value in old)
    # Recorded before the delete (a crash in between overstates it, never understates it).
    horizon = (date.fromisoformat(max(old)) + timedelta(days=1)).isoformat()
    if horizon > (expired_before(lake, table) or ""):
        set_table_properties(lake, table, {EXPIRED_BEFORE: horizon})
    lake.delete_where(table, f"{column} in ({listed})", {LIFECYCLE_KEY: "expire"})
    log.info("%s: expired %d partitions before %s", table.name, len(old), before)
    return old


def expired_before(lake: Lake, table: TableDef) -> str | None:
    """The ISO day before which :func:`expire_older` may have deleted ``table``'s partitions (None: never)."""
    return (table_properties(lake, table) or {}).get(EXPIRED_BEFORE)


def tier_states(lake: Lake, table: TableDef) -> dict[str, TableState | None]:
    """``{"hot": …, "cold": …}``: each tier's version, data files and bytes of ``table`` (None: absent)."""
    return {"hot": table_state(lake, table), "cold": table_state(lake.cold, table) if lake.cold else None}
