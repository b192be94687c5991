"""Gold Dagster objects: one asset per mart folder (:mod:`warehouse.marts`), each with its invariants
check, and the serving snapshot that publishes them.

The mart's ``kind`` picks its refresh: ``incremental`` (:func:`pipelines.gold.refresh_mart`),
``rebuild`` (:func:`pipelines.gold_rebuild.refresh_rebuilt`) or ``quality``
(:func:`pipelines.data_quality.refresh_data_quality`).
"""

from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.data_quality import refresh_data_quality
from pipelines.defs.checks import INVARIANTS_CHECK, suite_check, suite_check_spec, validate_mart
from pipelines.defs.ingest import raw_events
from pipelines.defs.resources import LakeResource, WarehouseResource
from pipelines.gold import refresh_mart
from pipelines.gold_rebuild import refresh_rebuilt
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS
from warehouse.marts import Mart
from warehouse.serving import pipeline_freshness, publish_snapshot


def _deps(mart: Mart) -> list[str | dg.AssetSpec]:
    """What a mart's asset runs after: silver (and for ``quality``, bronze and the quarantine), and
    the marts it reads."""
    if mart.spec.kind == "rebuild":
        return list(mart.spec.reads)
    if mart.spec.kind == "quality":
        return [raw_events, EVENTS.name, REJECTED_EVENTS.name]
    return [EVENTS.name, *mart.spec.reads]


def _refresh(con: duckdb.DuckDBPyConnection, lake: Lake, mart: Mart, warehouse: WarehouseResource) -> dict[str, int]:
    """Refresh ``mart`` by its kind; the materialization metadata of what it did. Validation then
    reads only the rows this refresh rewrote when the kind records their version (incremental)."""
    if mart.spec.kind == "rebuild":
        return {"row_count": refresh_rebuilt(con, mart)}
    if mart.spec.kind == "quality":
        return {"changed_days": refresh_data_quality(con, lake, mart)}
    stats = refresh_mart(con, lake, mart.name, warehouse.options())
    return {
        "silver_from_version": stats.silver_from,
        "silver_to_version": stats.silver_to,
        "bronze_version_covered": stats.bronze_version,
        "changed_days": stats.changed_days,
        "rewritten_rows": stats.rewritten_rows,
        # Only what this refresh rewrote; nothing when it rewrote nothing (rows carry a version >= 0).
        "validated_version": stats.silver_to if stats.rewritten_rows else -1,
    }


def mart_asset(mart: Mart, freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    """The Dagster asset of one mart folder, with its ``invariants`` check (its ``expectations.json``)."""
    suite = mart.folder.joinpath("expectations.json")

    @dg.asset(
        name=mart.name,
        deps=_deps(mart),
        group_name="gold",
        kinds={"duckdb"},
        description=mart.spec.description,
        freshness_policy=freshness,
        check_specs=[suite_check_spec(mart.name, INVARIANTS_CHECK, suite, f"marts/{mart.name}/expectations.json")],
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> Iterator[object]:
        with warehouse.connect() as con:
            metadata = _refresh(con, lake.lake(), mart, warehouse)
            version = metadata.pop("validated_version", None)
            metadata["row_count"] = int(con.table(mart.name).aggregate("count(*)").fetchall()[0][0])
            outcomes = validate_mart(con, mart.name, suite, warehouse.validation_part_rows, version)
        context.log.info("%s refreshed: %s", mart.name, metadata)
        yield dg.MaterializeResult(metadata=metadata)
        yield suite_check(mart.name, INVARIANTS_CHECK, mart.name, outcomes, dg.AssetCheckSeverity.ERROR)

    return _asset


def serving_asset(marts: Mapping[str, Mart], freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    """``serving_snapshot``: the served marts and their views, published for the dashboards."""

    @dg.asset(
        name="serving_snapshot",
        deps=list(marts),
        group_name="serving",
        kinds={"duckdb"},
        freshness_policy=freshness,
    )
    def serving_snapshot(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Serving: gold tables + curated views published atomically as a read-only DuckDB file for dashboards."""
        with warehouse.connect() as con:
            freshness_rows = pipeline_freshness(con, lake.lake())
            stats = publish_snapshot(
                con, Path(warehouse.serving_path), warehouse.options().marts, {"pipeline_freshness": freshness_rows}
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(stats.path)),
                "bytes": stats.bytes,
                **{f"rows_{name}": count for name, count in stats.row_counts.items()},
            }
        )

    return serving_snapshot
