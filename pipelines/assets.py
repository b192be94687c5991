"""Assets: bronze ``raw_events`` (external, observed) → silver ``events`` + quarantine
``rejected_events`` → gold ``daily_active_users`` and ``monthly_active_users``."""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from pipelines import transform
from pipelines.gold import pipeline_freshness, refresh_data_quality, refresh_mart
from pipelines.resources import LakeResource, WarehouseResource
from pipelines.scrubbing import DEFAULT_RULES_PATH, Scrubber, load_rules
from pipelines.validation import check_names, load_suite, split_by_suite
from warehouse.serving import publish_snapshot
from warehouse.settings import get_settings
from warehouse.tables import (
    DAILY_ACTIVE_USERS,
    DAILY_EVENT_COUNTS,
    DAILY_PAGE_VIEWS,
    EVENTS,
    MONTHLY_ACTIVE_USERS,
    RAW_EVENTS,
    REJECTED_EVENTS,
)

SUITE_NAME = RAW_EVENTS.name

raw_events = dg.AssetSpec(
    RAW_EVENTS.name,
    group_name="bronze",
    kinds={"deltalake"},
    description="Bronze: every event the ingest API acknowledged, as received (Delta, by received_date). "
    "Written by the API's group commit; observed by the bronze sensor (metadata: Delta version).",
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EVENTS.name,
            deps=[raw_events],
            group_name="silver",
            kinds={"deltalake", "polars"},
            description="Silver: validated, scrubbed, enriched events, one row per event_id (Delta, by event_date).",
        ),
        dg.AssetSpec(
            REJECTED_EVENTS.name,
            deps=[raw_events],
            group_name="quarantine",
            kinds={"deltalake"},
            description="Quarantine: bronze rows that failed the raw_events suite, with the checks they broke.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=EVENTS.name, description=description)
        for name, description in check_names(SUITE_NAME)
    ],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2),
)
def silver_events(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[object]:
    """Process bronze versions after silver's watermark: validate (GE), split, scrub, enrich, dedup."""
    store = lake.lake()
    bronze_version = store.version(RAW_EVENTS)
    after = store.watermark(EVENTS.name, RAW_EVENTS.name)
    until = after if bronze_version is None else bronze_version
    decoded = transform.decode(store.changes(RAW_EVENTS, after, until))
    split = split_by_suite(transform.validation_frame(decoded), load_suite(SUITE_NAME))
    valid, invalid, reasons = transform.apply_split(decoded, split)

    quarantined = store.insert_new(
        REJECTED_EVENTS,
        transform.build_quarantine(invalid, reasons, SUITE_NAME, context.run.run_id, datetime.now(UTC)),
    )
    scrubber = Scrubber(load_rules(get_settings().scrub_rules_path or DEFAULT_RULES_PATH))
    inserted = store.insert_new(EVENTS, transform.build_silver(valid, context.run.run_id, scrubber))
    if until > after:
        store.advance_watermark(EVENTS.name, RAW_EVENTS.name, until, context.run.run_id)

    reason_counts = Counter(failed[0]["check"] for failed in reasons)
    context.log.info(
        "bronze (%d, %d]: %d rows, %d valid, %d quarantined", after, until, decoded.height, valid.height, invalid.height
    )
    yield dg.MaterializeResult(
        asset_key=EVENTS.name,
        metadata={
            "bronze_from_version": after,
            "bronze_to_version": until,
            "bronze_rows": decoded.height,
            "valid_rows": valid.height,
            "inserted_rows": inserted,
            "duplicates_dropped": valid.height - inserted,
            # distinct URLs/locations are scrubbed once, so those count distinct values, not rows
            "scrub_report": dg.MetadataValue.json(dict(sorted(scrubber.counts.items()))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=REJECTED_EVENTS.name,
        metadata={
            "quarantined_rows": invalid.height,
            "inserted_rows": quarantined,
            "reasons": dg.MetadataValue.json(dict(reason_counts)),
        },
    )
    for outcome in split.checks:
        yield dg.AssetCheckResult(
            asset_key=EVENTS.name,
            check_name=outcome.check,
            passed=outcome.success,
            # Failing rows are quarantined, not lost: a warning, not a blocking error.
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "expectation": outcome.expectation,
                "column": outcome.column or "",
                "element_count": outcome.element_count,
                "unexpected_count": outcome.unexpected_count,
            },
        )


def _gold_asset(mart: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(name=mart, deps=[EVENTS.name], group_name="gold", kinds={"duckdb"}, description=description)
    def _refresh(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            stats = refresh_mart(con, lake.lake(), mart)
            rows = con.table(mart).aggregate("count(*)").fetchall()[0][0]
        context.log.info("%s refreshed: %s", mart, stats)
        return dg.MaterializeResult(
            metadata={
                "silver_from_version": stats.silver_from,
                "silver_to_version": stats.silver_to,
                "bronze_version_covered": stats.bronze_version,
                "changed_days": stats.changed_days,
                "rewritten_rows": stats.rewritten_rows,
                "row_count": int(rows),
            }
        )

    return _refresh


_MART_DESCRIPTIONS = {
    DAILY_ACTIVE_USERS: "Gold: DAU per app and UTC day (people, bots excluded).",
    MONTHLY_ACTIVE_USERS: "Gold: MAU per app and UTC day, rolling 30-day and calendar month.",
    DAILY_EVENT_COUNTS: "Gold: events and people per app, day, event type and bot flag.",
    DAILY_PAGE_VIEWS: "Gold: page views and people per app, day and page URL (bots excluded).",
}
GOLD_ASSETS = [
    _gold_asset(mart, description + " Incremental by changed day.") for mart, description in _MART_DESCRIPTIONS.items()
]


@dg.asset(
    deps=[raw_events, EVENTS.name, REJECTED_EVENTS.name],
    group_name="gold",
    kinds={"duckdb"},
)
def data_quality_daily(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Gold: received vs valid vs quarantined (by reason) vs duplicate events per app and day received."""
    with warehouse.connect() as con:
        rows = refresh_data_quality(con, lake.lake())
    return dg.MaterializeResult(metadata={"row_count": rows})


@dg.asset(deps=[*GOLD_ASSETS, data_quality_daily], group_name="serving", kinds={"duckdb"})
def serving_snapshot(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Serving: gold tables + curated views published atomically as a read-only DuckDB file for dashboards."""
    with warehouse.connect() as con:
        freshness = pipeline_freshness(con, lake.lake())
        stats = publish_snapshot(con, Path(warehouse.serving_path), {"pipeline_freshness": freshness})
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(stats.path)),
            "bytes": stats.bytes,
            **{f"rows_{name}": count for name, count in stats.row_counts.items()},
        }
    )
