"""The serving snapshot: a small read-only DuckDB file that dashboards query.

The gold tables are copied into a fresh file next to the served path, the curated views (each
mart folder's ``views.sql``: what analysts build charts on, reading only the snapshot's own
tables, so the file stands alone) are added, the file is checkpointed and closed, then
atomically renamed onto the served path (``os.replace``). A reader therefore opens either the
old or the new file, never a half-written one, and never contends for the warehouse's write lock.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.gold import registered
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, GOLD_WATERMARKS, RAW_EVENTS, REJECTED_EVENTS
from warehouse.marts import Mart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotStats:
    """A published snapshot: its path, size in bytes and row count per table."""

    path: Path
    bytes: int
    row_counts: dict[str, int]


def publish_snapshot(
    warehouse: duckdb.DuckDBPyConnection,
    target: Path,
    marts: Mapping[str, Mart],
    extra_tables: dict[str, pa.Table] | None = None,
) -> SnapshotStats:
    """Write the served marts, the watermarks (+ ``extra_tables``) and the marts' serving views
    (their ``views.sql``) to ``target`` atomically.

    Person-level and per-session state (``served: false``) stays in the warehouse, so the snapshot
    stays small and holds no person ids. The watermarks travel along so readers can tell which
    bronze version the served numbers cover.

    Raises:
        duckdb.Error: when copying fails; the served file is then left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    served = [name for name, mart in marts.items() if mart.spec.served]
    tables = {name: warehouse.table(name).to_arrow_table() for name in (*served, GOLD_WATERMARKS)}
    tables.update(extra_tables or {})
    try:
        snapshot = duckdb.connect(str(staging))
        try:
            for name, rows in tables.items():
                with registered(snapshot, {"source_rows": rows}):
                    # `name` is a mart's (a checked identifier) or the caller's constant keys, never from input.
                    snapshot.execute(f"create table {name} as select * from source_rows")
            for mart in marts.values():
                if mart.has("views.sql"):
                    snapshot.execute(mart.sql("views"))
            snapshot.execute("checkpoint")
        finally:
            snapshot.close()
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    stats = SnapshotStats(target, target.stat().st_size, {name: rows.num_rows for name, rows in tables.items()})
    log.info("published serving snapshot %s (%d bytes)", target, stats.bytes)
    return stats


def pipeline_freshness(con: duckdb.DuckDBPyConnection, lake: Lake) -> pa.Table:
    """When each layer last changed, and how large each lake table is in each tier: ``(layer,
    table_name, version, updated_at UTC, tier, files, bytes)`` rows.

    Lake tables report their latest Delta commit (version and commit time) and their data files and
    bytes, per tier (``hot``; silver's ``cold`` tier too, :mod:`warehouse.lake.tiers`); gold marts
    report the silver version they consumed and when their watermark last moved (no tier, files or bytes).
    """
    rows: list[dict[str, object]] = []
    tables = [("bronze", RAW_EVENTS, lake, "hot"), ("silver", EVENTS, lake, "hot")]
    if lake.cold is not None:
        tables.append(("silver", EVENTS, lake.cold, "cold"))
    tables.append(("quarantine", REJECTED_EVENTS, lake, "hot"))
    for layer, table, tier_lake, tier in tables:
        dt = tier_lake.open(table)
        if dt is None:
            continue
        last = dt.history(1)[0]
        sizes = pa.table(dt.get_add_actions(flatten=True))["size_bytes"]
        rows.append(
            {
                "layer": layer,
                "table_name": table.name,
                "version": dt.version(),
                "updated_at": datetime.fromtimestamp(last["timestamp"] / 1000, tz=UTC),
                "tier": tier,
                "files": len(sizes),
                "bytes": pc.sum(sizes).as_py() or 0,
            }
        )
    for mart, silver_version, updated_at in (
        con.table("gold_watermarks").select("mart, silver_version, updated_at").fetchall()
    ):
        rows.append({"layer": "gold", "table_name": mart, "version": silver_version, "updated_at": updated_at})
    schema = pa.schema(
        [
            ("layer", pa.string()),
            ("table_name", pa.string()),
            ("version", pa.int64()),
            ("updated_at", pa.timestamp("us", tz="UTC")),
            ("tier", pa.string()),
            ("files", pa.int64()),
            ("bytes", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
