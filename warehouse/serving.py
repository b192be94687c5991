"""The serving snapshot: a small read-only DuckDB file that dashboards query.

The gold tables are copied into a fresh file next to the served path, the curated views
(``sql/create_serving_views.sql``) are added, the file is checkpointed and closed, then
atomically renamed onto the served path (``os.replace``). A reader therefore opens either the
old or the new file, never a half-written one, and never contends for the warehouse's write lock.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.gold import MARTS, load_sql
from warehouse.tables import DATA_QUALITY_DAILY, GOLD_WATERMARKS, RETENTION_COHORTS

log = logging.getLogger(__name__)

#: Gold tables copied into every snapshot, besides the extra tables passed in: the aggregate marts
#: (person-level and per-session state stays in the warehouse, so the snapshot stays small and holds
#: no person ids). The watermarks travel along so readers can tell which bronze version the served
#: numbers cover.
SNAPSHOT_TABLES = (
    *(name for name, mart in MARTS.items() if mart.served),
    RETENTION_COHORTS,
    DATA_QUALITY_DAILY,
    GOLD_WATERMARKS,
)


@dataclass(frozen=True)
class SnapshotStats:
    """A published snapshot: its path, size in bytes and row count per table."""

    path: Path
    bytes: int
    row_counts: dict[str, int]


def publish_snapshot(
    warehouse: duckdb.DuckDBPyConnection, target: Path, extra_tables: dict[str, pa.Table] | None = None
) -> SnapshotStats:
    """Write the gold tables (+ ``extra_tables``) and curated views to ``target`` atomically.

    Raises:
        duckdb.Error: when copying fails; the served file is then left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tables = {name: warehouse.table(name).to_arrow_table() for name in SNAPSHOT_TABLES}
    tables.update(extra_tables or {})
    try:
        snapshot = duckdb.connect(str(staging))
        try:
            for name, rows in tables.items():
                snapshot.register("source_rows", rows)
                # `name` comes from SNAPSHOT_TABLES or the caller's constant keys, never from input.
                snapshot.execute(f"create table {name} as select * from source_rows")
                snapshot.unregister("source_rows")
            snapshot.execute(load_sql("create_serving_views"))
            snapshot.execute("checkpoint")
        finally:
            snapshot.close()
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    stats = SnapshotStats(target, target.stat().st_size, {name: rows.num_rows for name, rows in tables.items()})
    log.info("published serving snapshot %s (%d bytes)", target, stats.bytes)
    return stats
