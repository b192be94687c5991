"""Maintenance of lake tables: their properties, compaction, checkpoints, the expiry of log entries
and the vacuum of files that no reader needs any more, and the purge of what only older versions need.

What every reader relies on (docs/lifecycle.md): a consumer that has processed a table up to
version ``K`` (its watermark) next reads the versions after ``K`` (the change feed) or builds the
table as of ``K``; so :func:`expire_log` keeps a checkpoint at or before ``K`` and every log entry
after it, and :func:`vacuum` keeps every file a version from ``K`` on reads. Compaction commits
add no data (``dataChange: false``): change-feed readers skip them.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from warehouse.lake.object_store import filesystem
from warehouse.lake.store import Lake, retry_commit
from warehouse.lake.tables import TableDef

log = logging.getLogger(__name__)

#: ``<version>.json``, ``<version>.crc``, ``<version>.checkpoint.parquet`` and multi-part
#: ``<version>.checkpoint.<part>.<parts>.parquet`` (Delta protocol, "Delta Log Entries", "Checkpoints").
_LOG_FILE = re.compile(r"^(\d{20})\.(json|crc|checkpoint(\.\d+\.\d+)?\.parquet)$")


@dataclass(frozen=True)
class TableState:
    """A table's size at one version: its data files and their bytes."""

    version: int
    files: int
    bytes: int


def table_state(lake: Lake, table: TableDef) -> TableState | None:
    """The table's current version, data files and bytes; ``None`` when it does not exist."""
    dt = lake.open(table)
    if dt is None:
        return None
    actions = pa.table(dt.get_add_actions(flatten=True))
    size = pc.sum(actions["size_bytes"]).as_py() if actions.num_rows else 0
    return TableState(dt.version(), actions.num_rows, int(size or 0))


@retry_commit
def compact_closed(lake: Lake, table: TableDef, closed_before: object, target_bytes: int) -> list[str]:
    """Compact the partitions (of the first partition column) before ``closed_before`` that hold more
    than one file: their small files rewritten into files of up to ``target_bytes`` (the lake's own
    target and writer properties when it has them: the cold tier's), in one commit
    that adds no data. Partitions at or after ``closed_before`` (today's bronze, silver's late-event
    window) keep receiving appends and are left alone. Returns the partition values compacted.

    Raises:
        deltalake.exceptions.DeltaError: the commit failed (after retries on conflicts).
    """
    dt = lake.open(table)
    if dt is None or not table.partition_by:
        return []
    column = f"partition.{table.partition_by[0]}"
    actions = pa.table(dt.get_add_actions(flatten=True)).select([column])
    counts = actions.group_by(column).aggregate([([], "count_all")])
    values = [
        value
        for value, count in zip(counts[column].to_pylist(), counts["count_all"].to_pylist(), strict=True)
        if value is not None and value < closed_before and count > 1
    ]
    if not values:
        return []
    names = sorted(str(value) for value in values)
    with lake.rewrite_lock(table):  # never beside another compaction or an overwrite
        dt.update_incremental()
        metrics = dt.optimize.compact(
            partition_filters=[(table.partition_by[0], "in", names)],
            target_size=lake.target_file_bytes or target_bytes,
            writer_properties=lake.writer,
        )
    log.info("%s: compacted %d partitions: %s", table.name, len(names), metrics)
    return names


@dataclass(frozen=True)
class AutoCompaction:
    """Auto compaction of the partitions a writer appends to (Databricks' "auto compaction": after
    a write, a partition holding at least ``min_files`` files smaller than ``target_bytes`` is
    compacted into files of up to ``target_bytes``), so the files of open partitions (today's bronze,
    silver's recent days), and with them the cost of every commit (delta-rs's grows with the table's
    file count: 11 ms at 50 files, 36 ms at 3,000), stay bounded between maintenance runs. Closed
    partitions are compacted again, into larger files, by :func:`compact_closed`.
    """

    min_files: int
    target_bytes: int


class AutoCompactor:
    """Runs :class:`AutoCompaction` for one writing process, off the write path.

    :meth:`after_write` (called by :class:`warehouse.lake.store.Lake` after each of its appends)
    counts the partition's small files in the writer's snapshot and hands a compaction to one
    background thread, at most one pending per (table, partition): the writer's commits go on
    meanwhile (an append and a compaction never conflict: the append removes nothing). A compaction
    runs only while it holds the table's rewrite lock (:meth:`warehouse.lake.store.Lake.rewrite_lock`),
    and is skipped when another process holds it (the next write triggers it again); a failure is
    logged, never raised into the writer.
    """

    def __init__(self, policy: AutoCompaction) -> None:
        self.policy = policy
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="auto-compact")
        self._pending: set[tuple[str, str, str]] = set()
        self._writes: dict[tuple[str, str], int] = {}  # writes since the last look, by (root, table)
        self._lock = threading.Lock()

    def after_write(self, lake: Lake, table: TableDef, dt: DeltaTable, rows: pa.Table) -> None:
        """Schedule the compaction of each partition ``rows`` went to (the whole table when it is
        not partitioned) that holds at least ``min_files`` small files as of ``dt`` (the writer's
        handle, at its own commit). The file list is looked at every ``min_files // 4`` writes of
        this process to a table (it costs ~3 ms a look), so a partition holds at most ~1.25 times
        ``min_files`` small files per writing process."""
        key = (lake.root, table.name)
        with self._lock:
            self._writes[key] = self._writes.get(key, 0) + 1
            if self._writes[key] < max(1, self.policy.min_files // 4):
                return
            self._writes[key] = 0
        actions = pa.table(dt.get_add_actions(flatten=True))
        small = actions.filter(pc.less(actions["size_bytes"], self.policy.target_bytes))
        if small.num_rows < self.policy.min_files:
            return
        if not table.partition_by:
            self._submit(lake, table, None)
            return
        column = table.partition_by[0]
        counts = small.group_by(f"partition.{column}").aggregate([([], "count_all")])
        full = counts.filter(pc.greater_equal(counts["count_all"], self.policy.min_files))
        written = pc.unique(rows[column].cast(full.schema.field(0).type))
        for value in full.filter(pc.is_in(full[0], written))[0].to_pylist():
            self._submit(lake, table, value)

    def _submit(self, lake: Lake, table: TableDef, value: object) -> None:
        """Queue one compaction unless the same one is pending."""
        key = (lake.root, table.name, str(value))
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._pool.submit(self._compact, lake, table, value, key)

    def _compact(self, lake: Lake, table: TableDef, value: object, key: tuple[str, str, str]) -> None:
        """Compact one partition (``value`` None: the table) on a fresh handle; never raises."""
        try:
            with lake.rewrite_lock(table, blocking=False) as held:
                if not held:  # another process compacts or rewrites the table: the next write looks again
                    log.debug("%s: auto compaction of %s skipped: the table is being rewritten", table.name, value)
                    return
                dt = lake.open(table)
                if dt is None:
                    return
                filters = [(table.partition_by[0], "=", str(value))] if value is not None else None
                metrics = dt.optimize.compact(
                    partition_filters=filters, target_size=self.policy.target_bytes, max_concurrent_tasks=1
                )
            log.info("%s: auto-compacted %s: %s", table.name, value, metrics)
        except CommitFailedError:
            log.info("%s: auto compaction of %s lost a race with another compaction", table.name, value)
        except Exception:
            log.warning("%s: auto compaction of %s failed", table.name, value, exc_info=True)
        finally:
            with self._lock:
                self._pending.discard(key)

    def wait(self) -> None:
        """Wait until the compactions queued so far have ended (tests, shutdown)."""
        self._pool.submit(lambda: None).result()


@lru_cache(maxsize=4)
def auto_compactor(min_files: int, target_mb: int) -> AutoCompactor | None:
    """This process's :class:`AutoCompactor` for a policy (one background thread, shared by every
    ``Lake`` of the process); ``None`` when ``min_files`` is 0 (auto compaction off)."""
    return AutoCompactor(AutoCompaction(min_files, target_mb * 1024 * 1024)) if min_files > 0 else None


def _log_files(lake: Lake, table: TableDef) -> list[tuple[int, str, pafs.FileInfo]]:
    """``(version, kind, info)`` of every file of the table's ``_delta_log`` named by a version."""
    fs, base = filesystem(lake.uri(table), lake.storage_options)
    files = []
    for info in fs.get_file_info(pafs.FileSelector(f"{base}/_delta_log")):
        match = _LOG_FILE.match(info.base_name)
        if match:
            files.append((int(match.group(1)), match.group(2), info))
    return files


def expire_log(lake: Lake, table: TableDef, keep_from: int, retention: timedelta) -> int:
    """Delete the log entries (and older checkpoints) before the last checkpoint at or before
    ``keep_from`` that are older than ``retention``: every reader can still build any version from
    ``keep_from`` on, and read the change feed after it. Returns how many log files were deleted.
    A table delta-rs must not clean up by age on its own carries ``delta.enableExpiredLogCleanup =
    false`` (:attr:`warehouse.lake.tables.TableDef.properties`).
    """
    files = _log_files(lake, table)
    checkpoints = [version for version, kind, _ in files if kind.startswith("checkpoint") and version <= keep_from]
    if not checkpoints:
        return 0
    boundary = max(checkpoints)
    cutoff = datetime.now(UTC) - retention
    expired = [
        info
        for version, _, info in files
        if version < boundary and info.mtime is not None and info.mtime.replace(tzinfo=UTC) < cutoff
    ]
    fs, _ = filesystem(lake.uri(table), lake.storage_options)
    for info in sorted(expired, key=lambda info: info.base_name):  # oldest first: a crash leaves a suffix
        fs.delete_file(info.path)
    if expired:
        log.info("%s: expired %d log files before the checkpoint of v%d", table.name, len(expired), boundary)
    return len(expired)


def vacuum(lake: Lake, table: TableDef, keep_from: int, min_age: timedelta) -> list[str]:
    """Delete the table's data and change-data files that no version from ``keep_from`` on needs.

    Mark and sweep over storage, not over the log's tombstones (every table keeps those in its
    checkpoints for a minute only, :attr:`warehouse.lake.tables.TableDef.properties`: a week of them
    at 20 commits/s would be millions of rows in every checkpoint). Kept: the files of version
    ``keep_from`` and of the latest version, and every file written less than ``min_age`` before
    ``keep_from`` was committed: a file any later version added (or a change-data file it wrote) was
    written after that, or less than an append's write-to-commit time before it, so ``min_age`` must
    exceed that time (0 only on a table no one writes: a vacuum with 0 under load deleted an
    append's file written just before the floor's commit and committed just after). Every
    other ``.parquet`` file under the table (outside ``_delta_log``) is deleted, leftovers of failed
    writes included. Nothing is deleted while ``keep_from`` is negative (a consumer reads from the
    start) or its log entry is gone. Runs under the table's rewrite lock (waits for a compaction or
    an overwrite to end). Returns the deleted files' paths relative to the table.
    """
    if keep_from < 0:
        return []
    with lake.rewrite_lock(table):  # a rewrite's files are older than min_age before its commit
        return _sweep(lake, table, keep_from, min_age)


def _sweep(lake: Lake, table: TableDef, keep_from: int, min_age: timedelta) -> list[str]:
    """:func:`vacuum`'s mark and sweep, under the table's rewrite lock."""
    latest = lake.open(table)
    try:
        kept = lake.open(table, version=keep_from) if latest is not None and keep_from <= latest.version() else None
    except DeltaError:  # the floor's version cannot be built any more: keep everything
        log.warning("%s: v%d cannot be opened; nothing vacuumed", table.name, keep_from, exc_info=True)
        return []
    committed = {version: info for version, kind, info in _log_files(lake, table) if kind == "json"}.get(keep_from)
    if latest is None or kept is None or committed is None or committed.mtime is None:
        return []
    cutoff = min(datetime.now(UTC), committed.mtime.replace(tzinfo=UTC)) - min_age
    needed = {unquote(path) for dt in (kept, latest) for path in pa.table(dt.get_add_actions())["path"].to_pylist()}
    fs, base = filesystem(lake.uri(table), lake.storage_options)
    deleted = []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        path = info.path[len(base) :].lstrip("/")
        if (
            info.type != pafs.FileType.File
            or not path.endswith(".parquet")
            or path.startswith("_delta_log/")
            or path in needed
            or info.mtime is None
            or info.mtime.replace(tzinfo=UTC) >= cutoff
        ):
            continue
        fs.delete_file(info.path)
        deleted.append(path)
    if deleted:
        log.info("%s: vacuumed %d files no version from v%d on needs", table.name, len(deleted), keep_from)
    return deleted


def checkpoint(lake: Lake, table: TableDef) -> int | None:
    """Write a checkpoint of the table's current version (readers start from it); that version."""
    dt = lake.open(table)
    if dt is None:
        return None
    dt.create_checkpoint()
    return dt.version()


def table_properties(lake: Lake, table: TableDef) -> dict[str, str] | None:
    """The table's Delta table properties (its configuration); ``None`` when it does not exist."""
    dt = lake.open(table)
    return None if dt is None else dict(dt.metadata().configuration)


@retry_commit
def set_table_properties(lake: Lake, table: TableDef, properties: dict[str, str]) -> int:
    """Set table properties (custom keys allowed) in one metadata commit; returns its version."""
    dt = lake.ensure(table)
    dt.alter.set_table_properties(properties, raise_if_not_exists=False)
    return dt.version()


def purge_history(lake: Lake, table: TableDef) -> tuple[int, int]:
    """Remove every file and log entry that only versions before the current one need, so what
    rows held before a rewrite (:mod:`pipelines.rescrub`) is gone from storage.

    Under the table's rewrite lock (no compaction writes files meanwhile): a checkpoint of the
    current version ``V``; the vacuum's mark and sweep (:func:`vacuum`) from ``V`` with no margin,
    which deletes every data and change-data file ``V`` does not hold and that was written before
    ``V`` was committed (leftovers of failed writes too); then the expiry of every log entry before
    the checkpoint of ``V`` (:func:`expire_log`). A reader that has read up to ``V`` goes on (its
    next change feed starts at ``V + 1``); readers of older versions fail, so callers make sure every
    consumer has read ``V`` first, and that no other process appends meanwhile (silver and the
    quarantine: the pipeline's runs, one at a time). Change feeds from the start read the table
    instead (:func:`warehouse.lake.history.change_stream`). Returns ``(files removed, log files removed)``.

    Raises:
        deltalake.exceptions.DeltaError: a step failed; running it again finishes the job.
    """
    with lake.rewrite_lock(table):
        version = checkpoint(lake, table)
        if version is None:
            return 0, 0
        removed = _sweep(lake, table, version, timedelta(0))
        expired = expire_log(lake, table, version, timedelta(0))
    log.info("%s: purged %d files and %d log files of older versions", table.name, len(removed), expired)
    return len(removed), expired
