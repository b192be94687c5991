"""Gold Dagster objects: one asset per mart folder (:mod:`warehouse.marts`), refreshed together by the
``gold_marts`` step, the serving snapshot that publishes them, then each mart's invariants check.

The mart's ``kind`` picks its refresh: ``incremental`` (:func:`pipelines.gold.refresh_mart`),
``rebuild`` (:func:`pipelines.gold_rebuild.refresh_rebuilt`) or ``quality``
(:func:`pipelines.data_quality.refresh_data_quality`).
"""

import time
from collections.abc import Iterator, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.definitions.metadata import RawMetadataValue

from pipelines.data_quality import refresh_data_quality
from pipelines.defs.checks import INVARIANTS_CHECK, suite_check, suite_check_spec, validate_mart
from pipelines.defs.ingest import raw_events
from pipelines.defs.resources import LakeResource, WarehouseResource
from pipelines.gold import MicroBatch, refresh
from pipelines.gold_rebuild import refresh_rebuilt
from warehouse.gold import erasures_pending, rewrite_file
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


class MartRefreshError(RuntimeError):
    """Refreshing one mart of the gold step failed: the message starts with the mart's name and the
    cause (the marts before it keep their refresh, the ones after it were not run)."""


def dependency_order(marts: Mapping[str, Mart]) -> list[Mart]:
    """``marts`` with every mart after the marts it reads (``reads`` in its ``mart.yaml``), else in
    catalog order."""
    ordered: dict[str, Mart] = {}

    def visit(mart: Mart) -> None:
        if mart.name in ordered:
            return
        for upstream in mart.spec.reads:
            if upstream in marts:
                visit(marts[upstream])
        ordered[mart.name] = mart

    for mart in marts.values():
        visit(mart)
    return list(ordered.values())


def _refresh(con: duckdb.DuckDBPyConnection, batch: MicroBatch, mart: Mart) -> dict[str, RawMetadataValue]:
    """Refresh ``mart`` by its kind with the run's shared reads; the materialization metadata of what
    it did (``skipped``: nothing it depends on changed, only its watermark moved)."""
    if mart.spec.kind == "rebuild":
        upstream_changed = any(batch.rewritten.get(name, 1) for name in mart.spec.reads)
        rows = refresh_rebuilt(con, mart, upstream_changed)
        batch.rewritten[mart.name] = rows or 0
        return {"skipped": rows is None, **({"row_count": rows} if rows is not None else {})}
    if mart.spec.kind == "quality":
        days = refresh_data_quality(con, batch.lake, mart, batch.feed)
        batch.rewritten[mart.name] = days
        return {"skipped": days == 0, "changed_days": days}
    stats = refresh(con, batch, mart)
    return {
        "skipped": stats.rewritten_rows == 0,
        "silver_from_version": stats.silver_from,
        "silver_to_version": stats.silver_to,
        "bronze_version_covered": stats.bronze_version,
        "changed_days": stats.changed_days,
        "rewritten_rows": stats.rewritten_rows,
        "appended_days": stats.appended_days,
    }


def _suite(mart: Mart) -> Traversable:
    """The mart's suite of invariants: its folder's ``expectations.json``."""
    return mart.folder.joinpath("expectations.json")


def gold_asset(marts: Mapping[str, Mart], freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    """``gold_marts``: one asset per mart folder (:mod:`warehouse.marts`), refreshed together in one step
    (their checks: :func:`gold_checks`).

    One step, because a micro-batch's marts share what they read: one warehouse connection, one
    read of silver's change feed and its changed days (:class:`pipelines.gold.MicroBatch`), the mart
    inputs. Each mart is still its own asset (materialization and metadata, selectable alone in the
    UI: the step refreshes the selected marts). Marts nothing changed for are skipped (materialized
    with ``skipped: true``, their watermark moved). Step per mart, the same work cost ~0.25 s of fixed
    cost per mart (a connection, the feed, the checks, Dagster's step events): docs/benchmarks.md.
    """
    ordered = dependency_order(marts)
    specs = [
        dg.AssetSpec(
            mart.name,
            deps=_deps(mart),
            group_name="gold",
            kinds={"duckdb"},
            description=mart.spec.description,
            freshness_policy=freshness,
            skippable=True,
        )
        for mart in ordered
    ]

    @dg.multi_asset(name="gold_marts", specs=specs, can_subset=True)
    def gold_marts(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        batch = MicroBatch(lake.lake(), warehouse.options())
        changed: list[str] = []
        with warehouse.connect() as con:
            erased = erasures_pending(con)
            for mart in (mart for mart in ordered if mart.name in selected):
                started = time.perf_counter()
                try:
                    metadata = _refresh(con, batch, mart)
                except Exception as error:
                    raise MartRefreshError(f"{mart.name}: {type(error).__name__}: {error}") from error
                metadata["refresh_s"] = round(time.perf_counter() - started, 3)
                changed += [] if metadata["skipped"] else [mart.name]
                yield dg.MaterializeResult(asset_key=mart.name, metadata=metadata)
        context.log.info("gold: %d marts refreshed, %d changed (%s)", len(selected), len(changed), ", ".join(changed))
        if erased:  # no byte of an erased person's rows may stay in the file's free blocks
            rewrite_file(Path(warehouse.path))
            context.log.info("warehouse file rewritten after an erasure")

    return gold_marts


def _materialized_in_run(context: dg.AssetCheckExecutionContext) -> dict[str, Mapping[str, dg.MetadataValue]]:
    """Metadata of each asset this run materialized, by asset name (one read of the run's events)."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {
        materialization.asset_key.to_user_string(): materialization.metadata
        for record in records
        for materialization in [record.event_log_entry.asset_materialization]
        if materialization is not None
    }


def _what_to_validate(mart: Mart, this_run: Mapping[str, Mapping[str, dg.MetadataValue]]) -> tuple[bool, int | None]:
    """What ``mart``'s check validates: ``(validate, silver_version)``. Materialized by this run
    (``this_run``: :func:`_materialized_in_run`): nothing if it was skipped, else the rows its refresh
    rewrote (incremental marts: their ``silver_version`` lineage) or the whole table (the other
    kinds). Not materialized by this run (the check run alone): the whole table."""
    metadata = this_run.get(mart.name)
    if metadata is None:
        return True, None
    if metadata["skipped"].value:
        return False, None
    version = metadata["silver_to_version"].value if mart.spec.kind == "incremental" else None
    return True, version if isinstance(version, int) else None


def gold_checks(marts: Mapping[str, Mart]) -> dg.AssetChecksDefinition:
    """``gold_checks``: every mart's ``invariants`` check (its folder's ``expectations.json``), in one
    step after the serving snapshot: the checks never hold back what the dashboards show (they do not
    block it either way, ``ERROR`` severity), ~0.4 s of a one-event micro-batch before (docs/benchmarks.md).
    A check validates what its mart's refresh rewrote in this run (:func:`_what_to_validate`); a
    skipped mart gets no result."""
    ordered = dependency_order(marts)
    specs = [
        suite_check_spec(
            mart.name, INVARIANTS_CHECK, _suite(mart), f"marts/{mart.name}/expectations.json", ("serving_snapshot",)
        )
        for mart in ordered
    ]

    @dg.multi_asset_check(name="gold_checks", specs=specs, can_subset=True)
    def checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        selected = {key.asset_key.to_user_string() for key in context.selected_asset_check_keys}
        this_run = _materialized_in_run(context)
        with warehouse.connect() as con:
            for mart in (mart for mart in ordered if mart.name in selected):
                validate, version = _what_to_validate(mart, this_run)
                if not validate:
                    continue
                started = time.perf_counter()
                outcomes = validate_mart(con, mart.name, _suite(mart), warehouse.validation_part_rows, version)
                result = suite_check(mart.name, INVARIANTS_CHECK, mart.name, outcomes, dg.AssetCheckSeverity.ERROR)
                yield result.with_metadata({**result.metadata, "validation_s": round(time.perf_counter() - started, 3)})

    return checks


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
