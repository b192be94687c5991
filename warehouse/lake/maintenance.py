"""Maintenance of lake tables: their properties, and the purge of what only older versions need."""

from __future__ import annotations

import logging

import pyarrow.fs as pafs
from deltalake import PostCommitHookProperties

from warehouse.lake.store import Lake, retry_commit
from warehouse.lake.tables import TableDef

log = logging.getLogger(__name__)

_LOG_RETENTION = "delta.logRetentionDuration"
_DEFAULT_LOG_RETENTION = "interval 30 days"  # the Delta protocol's default


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

    A checkpoint of the current version ``V``; a vacuum with zero retention that also sweeps
    files no log entry names (``full``: the change-data files of deletes, leftovers of failed
    writes); then the expiry of every log entry before ``V``: the log's retention
    (``delta.logRetentionDuration``) is set to zero for the clean-up, then restored. The commits
    this makes add no data and no other checkpoint, so a reader that has read up to ``V`` goes on
    (its next change feed starts at ``V + 1``); readers of older versions fail, so callers make sure
    every consumer has read ``V`` first. Change feeds from the start read the table instead
    (:func:`warehouse.lake.history.change_stream`). Returns ``(files removed, log files removed)``.

    Raises:
        deltalake.exceptions.DeltaError: a step failed; running it again finishes the job.
    """
    dt = lake.open(table)
    if dt is None:
        return 0, 0
    dt.create_checkpoint()
    quiet = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
    removed = dt.vacuum(
        retention_hours=0,
        enforce_retention_duration=False,
        dry_run=False,
        full=True,
        post_commithook_properties=quiet,
    )
    before = set(_log_files(lake, table))
    retention = dt.metadata().configuration.get(_LOG_RETENTION, _DEFAULT_LOG_RETENTION)
    dt = lake.ensure(table)  # after the vacuum's own commits
    dt.alter.set_table_properties({_LOG_RETENTION: "interval 0 seconds"}, post_commithook_properties=quiet)
    try:
        lake.ensure(table).cleanup_metadata()  # the entries before the checkpoint of V
    finally:
        dt.alter.set_table_properties({_LOG_RETENTION: retention}, post_commithook_properties=quiet)
    expired = len(before - set(_log_files(lake, table)))
    log.info("%s: purged %d files and %d log files of older versions", table.name, len(removed), expired)
    return len(removed), expired


def _log_files(lake: Lake, table: TableDef) -> list[str]:
    fs, base = pafs.FileSystem.from_uri(lake.uri(table))
    return [info.path for info in fs.get_file_info(pafs.FileSelector(f"{base}/_delta_log"))]
