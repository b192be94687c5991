"""Assets: bronze ``raw_events`` (external, observed) → silver ``events`` + quarantine
``rejected_events`` → gold ``daily_active_users`` and ``monthly_active_users``."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from deltalake.exceptions import DeltaError
from pydantic import Field

from pipelines import rescrub, silver
from pipelines.gold import pipeline_freshness, refresh_data_quality, refresh_mart, refresh_retention
from pipelines.parallel import Parallelism
from pipelines.pseudonyms import Pseudonymizer, load_key
from pipelines.resources import LakeResource, WarehouseResource
from pipelines.scrubbing import DEFAULT_RULES_PATH, Scrubber, load_rules
from pipelines.user_attributes import load_user_attributes
from pipelines.validation import (
    CheckOutcome,
    check_names,
    checks_by_part,
    load_suite,
    split_by_suite,
    suite_columns,
)
from warehouse.gold import MARTS
from warehouse.serving import publish_snapshot
from warehouse.settings import get_settings
from warehouse.tables import (
    ACTIVE_PERSON_DAYS,
    ACTIVE_PERSON_WEEKS,
    ACTIVE_USERS_BREAKDOWN,
    COMPONENT_INTERACTIONS,
    DAILY_ACTIVE_USERS,
    DAILY_EVENT_COUNTS,
    DAILY_PAGE_VIEWS,
    DAILY_SESSIONS,
    DATA_QUALITY_DAILY,
    ERROR_SUMMARY,
    EVENTS,
    FORM_PROGRESS,
    FUNNEL_STEPS,
    MONTHLY_ACTIVE_USERS,
    RAW_EVENTS,
    REJECTED_EVENTS,
    RETENTION_COHORTS,
    SESSIONS,
    USER_ATTRIBUTES,
    WEEKLY_ACTIVE_USERS,
)

SUITE_NAME = RAW_EVENTS.name

#: Dagster freshness policy of every derived asset (evaluated by the daemon, shown in the UI):
#: warn, then fail, when it was not updated for that long (settings ``freshness_warn_s``/``_fail_s``).
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(seconds=get_settings().freshness_fail_s),
    warn_window=timedelta(seconds=get_settings().freshness_warn_s),
)

raw_events = dg.AssetSpec(
    RAW_EVENTS.name,
    group_name="bronze",
    kinds={"deltalake"},
    description="Bronze: every event the ingest API acknowledged, as received (Delta, by received_date). "
    "Written by the API's group commit; observed by the bronze sensor (metadata: Delta version).",
)


class SilverConfig(dg.Config):
    """Which rows a silver run processes (set per job; editable in the launchpad).

    ``mode``: ``ingest`` (bronze after the watermark), ``replay`` (quarantined rows not replayed
    yet), ``reprocess`` (rebuild ``event_date`` in ``[first_day, last_day]``, ISO dates, UTC) or
    ``rescrub`` (today's scrub rules applied in place to silver and the quarantine, see
    :mod:`pipelines.rescrub`).
    """

    mode: str = Field(default="ingest", description="ingest | replay | reprocess | rescrub")
    first_day: str | None = Field(default=None, description="reprocess: first event_date, YYYY-MM-DD")
    last_day: str | None = Field(default=None, description="reprocess: last event_date, YYYY-MM-DD (inclusive)")


BATCH_CHECKS = [
    (
        "batch_has_people_events",
        "A non-empty bronze range yields silver rows that count people: an empty result (all "
        "quarantined) is an error, an all-bot result a warning; an empty range passes, marked empty.",
    ),
    (
        "quarantine_rate",
        "Share of the batch's rows quarantined: above EVENTLAKE_QUARANTINE_WARN_RATE warns, above "
        "EVENTLAKE_QUARANTINE_ERROR_RATE is an error.",
    ),
]


#: Asset check of ``events`` validating each bronze micro-batch with ``expectations/raw_events.json``.
RAW_SUITE_CHECK = "raw_events_expectations"
#: Asset check of silver ``events`` and of every gold mart: its suite of invariants
#: (``expectations/<table>.json``) on what the run wrote.
INVARIANTS_CHECK = "invariants"


def suite_check_spec(asset: str, check: str, suite: str) -> dg.AssetCheckSpec:
    """The spec of the one asset check that runs suite ``suite``; its description lists the
    expectations (their ``meta.check`` names) it covers."""
    names = ", ".join(name for name, _ in check_names(suite))
    return dg.AssetCheckSpec(check, asset=asset, description=f"expectations/{suite}.json: {names}.")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EVENTS.name,
            deps=[raw_events],
            group_name="silver",
            kinds={"deltalake", "polars"},
            freshness_policy=FRESHNESS,
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
        suite_check_spec(EVENTS.name, RAW_SUITE_CHECK, SUITE_NAME),
        *(dg.AssetCheckSpec(name, asset=EVENTS.name, description=text) for name, text in BATCH_CHECKS),
        suite_check_spec(EVENTS.name, INVARIANTS_CHECK, EVENTS.name),
    ],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2),
)
def silver_events(context: dg.AssetExecutionContext, config: SilverConfig, lake: LakeResource) -> Iterator[object]:
    """Run the silver step (:mod:`pipelines.silver`) in the configured mode and report it.

    Raises:
        dagster.Failure: an unknown mode, or reprocess without a valid day range.
    """
    settings = get_settings()
    store = lake.lake()
    scrubber = Scrubber(load_rules(settings.scrub_rules_path or DEFAULT_RULES_PATH))
    rules = silver.Rules(
        load_suite(SUITE_NAME),
        scrubber,
        Pseudonymizer(load_key(settings), scrubber, settings.pseudonymize_all_ids),
        load_suite(EVENTS.name),
        Parallelism(settings.silver_workers, settings.silver_parallel_min_rows),
    )
    run_id = context.run.run_id
    if config.mode == "ingest":
        stats = silver.ingest(store, rules, run_id, settings.silver_max_batch_rows)
    elif config.mode == "replay":
        stats = silver.replay_quarantine(store, rules, run_id)
    elif config.mode == "reprocess":
        first, last = _day_range(config)
        stats = silver.reprocess(store, rules, run_id, first, last)
    elif config.mode == "rescrub":
        stats = rescrub.rescrub(store, rules)
    else:
        raise dg.Failure(f"unknown silver mode {config.mode!r}: use ingest, replay, reprocess or rescrub")
    context.log.info(
        "%s: %d rows, %d valid, %d inserted, %d quarantined",
        stats.mode,
        stats.rows,
        stats.valid,
        stats.inserted,
        stats.quarantined,
    )
    yield dg.MaterializeResult(
        asset_key=EVENTS.name,
        metadata={
            "mode": stats.mode,
            "bronze_from_version": stats.bronze_from,
            "bronze_to_version": stats.bronze_to,
            "bronze_latest_version": stats.bronze_latest,
            "bronze_rows": stats.rows,
            "valid_rows": stats.valid,
            "inserted_rows": stats.inserted,
            "duplicates_dropped": stats.valid - stats.inserted if stats.mode == "ingest" else 0,
            "bot_rows": stats.bots,
            "replayed_rows": stats.replayed,
            "replaced_days": stats.replaced_days,
            "processes": stats.processes,  # the calling one plus workers for the per-row stages
            "pseudonymized_ids": rules.pseudonymizer.count,
            # distinct URLs/locations are scrubbed once, so those count distinct values, not rows
            "scrub_report": dg.MetadataValue.json(dict(sorted(scrubber.counts.items()))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=REJECTED_EVENTS.name,
        metadata={
            "quarantined_rows": stats.quarantined,
            "inserted_rows": stats.quarantine_inserted,
            "reasons": dg.MetadataValue.json(dict(stats.reasons)),
            "reason_types": dg.MetadataValue.json(dict(stats.reason_types)),
        },
    )
    # Failing rows are quarantined, not lost: a warning; the batch checks below rate the batch.
    yield suite_check(EVENTS.name, RAW_SUITE_CHECK, SUITE_NAME, stats.checks, dg.AssetCheckSeverity.WARN)
    yield from batch_checks(stats, settings.quarantine_warn_rate, settings.quarantine_error_rate)
    # Invariants of what was written (expectations/events.json): a failure is a pipeline bug.
    yield suite_check(EVENTS.name, INVARIANTS_CHECK, EVENTS.name, stats.silver_checks, dg.AssetCheckSeverity.ERROR)


def suite_check(
    asset: str, check: str, suite: str, outcomes: list[CheckOutcome], severity: dg.AssetCheckSeverity
) -> dg.AssetCheckResult:
    """One asset check result for a whole suite's validation, at ``severity``: it passes when every
    expectation passed; metadata ``failed_expectations`` (names, comma-separated, or empty) and
    ``results`` (per expectation: GE expectation type, column, success, element and unexpected
    counts).

    One check per suite, not per expectation: every check result is three events in Dagster's event
    log (planned, output, evaluation), and 168 of them were half of a micro-batch's run time
    (docs/benchmarks.md, freshness).
    """
    failed = [outcome.check for outcome in outcomes if not outcome.success]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=not failed,
        severity=severity,
        metadata={
            "suite": suite,
            "expectations": len(outcomes),
            "failed_expectations": ", ".join(failed),
            "results": dg.MetadataValue.json(
                {
                    outcome.check: {
                        "expectation": outcome.expectation,
                        "column": outcome.column or "",
                        "success": outcome.success,
                        "element_count": outcome.element_count,
                        "unexpected_count": outcome.unexpected_count,
                    }
                    for outcome in outcomes
                }
            ),
        },
    )


def _day_range(config: SilverConfig) -> tuple[date, date]:
    try:
        first, last = date.fromisoformat(config.first_day or ""), date.fromisoformat(config.last_day or "")
    except ValueError as exc:
        raise dg.Failure(f"reprocess needs first_day and last_day as ISO dates (YYYY-MM-DD): {exc}") from exc
    if last < first:
        raise dg.Failure(f"reprocess range is empty: first_day {first} is after last_day {last}")
    return first, last


def batch_checks(stats: silver.BatchStats, warn_rate: float, error_rate: float) -> Iterator[dg.AssetCheckResult]:
    """The batch-level checks of one silver run (:data:`BATCH_CHECKS`), with their severity.

    They rate new bronze (ingest runs); replay, reprocess and rescrub runs pass them, marked as not rated.
    """
    people = stats.valid - stats.bots
    if stats.mode != "ingest":  # the other modes re-read rows already rated when they arrived
        passed, severity, verdict = True, dg.AssetCheckSeverity.WARN, f"not rated: {stats.mode} run"
    elif stats.rows == 0:
        passed, severity, verdict = True, dg.AssetCheckSeverity.WARN, "empty: no new rows to validate"
    elif stats.valid == 0:
        passed, severity, verdict = False, dg.AssetCheckSeverity.ERROR, "every row was quarantined"
    elif people == 0:
        passed, severity, verdict = False, dg.AssetCheckSeverity.WARN, "every valid row is a bot"
    else:
        passed, severity, verdict = True, dg.AssetCheckSeverity.WARN, "ok"
    yield dg.AssetCheckResult(
        asset_key=EVENTS.name,
        check_name="batch_has_people_events",
        passed=passed,
        severity=severity,
        metadata={"batch": verdict, "rows": stats.rows, "valid_rows": stats.valid, "bot_rows": stats.bots},
    )
    rate = stats.quarantined / stats.rows if stats.rows and stats.mode == "ingest" else 0.0
    yield dg.AssetCheckResult(
        asset_key=EVENTS.name,
        check_name="quarantine_rate",
        passed=rate <= warn_rate,
        severity=dg.AssetCheckSeverity.ERROR if rate > error_rate else dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantine_rate": round(rate, 6),
            "warn_above": warn_rate,
            "error_above": error_rate,
            "quarantined_rows": stats.quarantined,
            "rows": stats.rows,
        },
    )


def _version_or_none(version: int | None) -> int:
    return -1 if version is None else version


#: Asset check of ``user_attributes``: the users source could be read (else the last good load stays).
USERS_SOURCE_CHECK = "users_source_valid"


@dg.asset(
    name=USER_ATTRIBUTES.name,
    group_name="silver",
    kinds={"deltalake"},
    freshness_policy=FRESHNESS,
    description="Silver: the users source (EVENTLAKE_USERS_PATH, CSV or Delta) as a slowly changing "
    "dimension, one row per user, attribute and version; rewritten only when its content changed.",
    check_specs=[
        dg.AssetCheckSpec(
            USERS_SOURCE_CHECK,
            asset=USER_ATTRIBUTES.name,
            description="The users source could be read and validated; when not, the last good load "
            "stays in use and the check says which lines are wrong.",
        )
    ],
)
def user_attributes(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[object]:
    """Load the users source (:func:`pipelines.user_attributes.load_user_attributes`).

    A source that cannot be read or validated does not stop the run: the table keeps its last good
    content (the breakdown mart and the dashboards go on with it) and the ERROR check reports why.
    """
    store = lake.lake()
    source = str(get_settings().users_path or "(none)")
    try:
        loaded = load_user_attributes(store, get_settings(), context.run.run_id)
    except (OSError, ValueError, pl.exceptions.PolarsError, DeltaError) as error:
        context.log.error("users source %s not loaded, the last good load stays: %s", source, error)
        yield dg.MaterializeResult(
            metadata={
                "delta_version": _version_or_none(store.version(USER_ATTRIBUTES)),
                "changed": False,
                "source": source,
            }
        )
        yield dg.AssetCheckResult(
            check_name=USERS_SOURCE_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"error": f"{type(error).__name__}: {error}"},
        )
        return
    yield dg.MaterializeResult(
        metadata={
            "delta_version": loaded.version,
            "rows": loaded.rows,
            "users": loaded.users,
            "changed": loaded.changed,
            "source": source,
        }
    )
    yield dg.AssetCheckResult(check_name=USERS_SOURCE_CHECK, passed=True, severity=dg.AssetCheckSeverity.ERROR)


def _gold_checks(mart: str) -> list[dg.AssetCheckSpec]:
    return [suite_check_spec(mart, INVARIANTS_CHECK, mart)]


def validate_mart(con: duckdb.DuckDBPyConnection, mart: str, silver_version: int | None = None) -> list[CheckOutcome]:
    """Validate a mart against ``expectations/<mart>.json`` (its invariants): the whole table, or
    with ``silver_version`` only the rows that refresh rewrote (their ``silver_version`` lineage), so
    the check's cost follows the new data, not the mart's history (the grain's uniqueness over the
    whole table is the table's primary key, or the refresh's whole-day rewrites for the unkeyed ones).

    A mart with a ``day`` column (in every such grain) is read in parts of whole days of at most
    ``EVENTLAKE_VALIDATION_PART_ROWS`` rows (:func:`pipelines.validation.checks_by_part`): a first
    build rewrites every row, and GE on one pandas frame of a 50M-event history's sessions needed
    more than the machine's 23 GB.
    """
    suite = load_suite(mart)
    rows = con.table(mart)
    if silver_version is not None:
        rows = rows.filter(duckdb.ColumnExpression("silver_version") == duckdb.ConstantExpression(silver_version))
    columns = suite_columns(suite)
    if "day" not in rows.columns:
        return split_by_suite(rows.select(*columns).df(), suite).checks
    limit = get_settings().validation_part_rows
    day = duckdb.ColumnExpression("day")
    counts = rows.aggregate("day, count(*)", "day").order("day nulls first").fetchall()
    # A not-null expectation must see rows without a day: they are a part of their own.
    parts = [day.isnull()] if counts and counts[0][0] is None else []
    runs: list[list[date]] = []  # consecutive days, whole, up to the limit (a larger day alone)
    size = 0
    for value, n in counts[len(parts) :]:
        if not runs or size + n > limit:
            runs.append([])
            size = 0
        runs[-1].append(value)
        size += n
    parts += [day.between(duckdb.ConstantExpression(run[0]), duckdb.ConstantExpression(run[-1])) for run in runs]
    return checks_by_part((rows.filter(part).select(*columns).df() for part in parts), suite)


def _gold_asset(mart: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=mart,
        deps=[EVENTS.name, *MARTS[mart].reads],
        group_name="gold",
        kinds={"duckdb"},
        description=description,
        freshness_policy=FRESHNESS,
        check_specs=_gold_checks(mart),
    )
    def _refresh(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> Iterator[object]:
        with warehouse.connect() as con:
            stats = refresh_mart(con, lake.lake(), mart)
            rows = con.table(mart).aggregate("count(*)").fetchall()[0][0]
            # Only what this refresh rewrote; nothing when it rewrote nothing (rows carry a version >= 0).
            outcomes = validate_mart(con, mart, stats.silver_to if stats.rewritten_rows else -1)
        context.log.info("%s refreshed: %s", mart, stats)
        yield dg.MaterializeResult(
            metadata={
                "silver_from_version": stats.silver_from,
                "silver_to_version": stats.silver_to,
                "bronze_version_covered": stats.bronze_version,
                "changed_days": stats.changed_days,
                "rewritten_rows": stats.rewritten_rows,
                "row_count": int(rows),
            }
        )
        yield suite_check(mart, INVARIANTS_CHECK, mart, outcomes, dg.AssetCheckSeverity.ERROR)

    return _refresh


_MART_DESCRIPTIONS = {
    ACTIVE_PERSON_DAYS: "Gold state (person-level, not served): people active per app and day, the people "
    "metrics' compact input (DAU, WAU, MAU and retention read it, not events).",
    DAILY_ACTIVE_USERS: "Gold: DAU per app and UTC day (people, bots excluded).",
    WEEKLY_ACTIVE_USERS: "Gold: WAU per app and UTC day, rolling 7-day and ISO calendar week.",
    MONTHLY_ACTIVE_USERS: "Gold: MAU per app and UTC day, rolling 30-day and calendar month.",
    DAILY_EVENT_COUNTS: "Gold: events and people per app, day, event type and bot flag.",
    DAILY_PAGE_VIEWS: "Gold: page views and people per app, day and page URL (bots excluded).",
    FUNNEL_STEPS: "Gold: ordered funnels (warehouse/funnels.yaml) per app, day or week entered and step.",
    FORM_PROGRESS: "Gold: how far people get in each form (furthest field, abandonment) per app, day and step.",
    COMPONENT_INTERACTIONS: "Gold: events and people per UI component, page and interaction per app and day.",
    ERROR_SUMMARY: "Gold: error events by normalized stack fingerprint, with people and first/last seen per day.",
    SESSIONS: "Gold state (not served): one row per session (client session id, else inactivity) per start day.",
    DAILY_SESSIONS: "Gold: sessions per app and day started, bounce rate, median length, events per session.",
    ACTIVE_PERSON_WEEKS: "Gold state (person-level, not served): people active per app and ISO week.",
    ACTIVE_USERS_BREAKDOWN: "Gold: DAU per app and day by platform, device type, country, browser, OS and "
    "user attribute (valid at event time).",
}
GOLD_ASSETS = [
    _gold_asset(mart, description + " Incremental by changed day.") for mart, description in _MART_DESCRIPTIONS.items()
]


@dg.asset(
    deps=[raw_events, EVENTS.name, REJECTED_EVENTS.name],
    group_name="gold",
    kinds={"duckdb"},
    freshness_policy=FRESHNESS,
    check_specs=_gold_checks(DATA_QUALITY_DAILY),
)
def data_quality_daily(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> Iterator[object]:
    """Gold: valid vs bot vs quarantined (by reason) vs duplicate events per app and day received.

    Incremental by received day (``changed_days`` in the metadata)."""
    with warehouse.connect() as con:
        changed_days = refresh_data_quality(con, lake.lake())
        rows = con.table(DATA_QUALITY_DAILY).aggregate("count(*)").fetchall()[0][0]
        outcomes = validate_mart(con, DATA_QUALITY_DAILY)
    yield dg.MaterializeResult(metadata={"changed_days": changed_days, "row_count": int(rows)})
    yield suite_check(DATA_QUALITY_DAILY, INVARIANTS_CHECK, DATA_QUALITY_DAILY, outcomes, dg.AssetCheckSeverity.ERROR)


@dg.asset(
    deps=[ACTIVE_PERSON_WEEKS],
    group_name="gold",
    kinds={"duckdb"},
    freshness_policy=FRESHNESS,
    check_specs=_gold_checks(RETENTION_COHORTS),
)
def retention_cohorts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[object]:
    """Gold: weekly first-seen cohorts and N-week retention per app, rebuilt from active_person_weeks."""
    with warehouse.connect() as con:
        rows = refresh_retention(con)
        outcomes = validate_mart(con, RETENTION_COHORTS)
    yield dg.MaterializeResult(metadata={"row_count": rows})
    yield suite_check(RETENTION_COHORTS, INVARIANTS_CHECK, RETENTION_COHORTS, outcomes, dg.AssetCheckSeverity.ERROR)


@dg.asset(
    deps=[*GOLD_ASSETS, data_quality_daily, retention_cohorts],
    group_name="serving",
    kinds={"duckdb"},
    freshness_policy=FRESHNESS,
)
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


@dg.asset(
    deps=[serving_snapshot],
    group_name="maintenance",
    kinds={"deltalake"},
    description="Silver's and the quarantine's history after a rescrub: the file versions and log entries "
    "from before it removed, and the scrub rules' fingerprint recorded (pipelines.rescrub).",
)
def purged_history(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Purge silver's and the quarantine's old versions once gold has read the current ones.

    Raises:
        dagster.Failure: a gold mart has not read the tables' current versions (the purge would
            remove what its next change feed reads); nothing was removed.
    """
    settings = get_settings()
    store = lake.lake()
    fingerprint = load_rules(settings.scrub_rules_path or DEFAULT_RULES_PATH).fingerprint
    try:
        with warehouse.connect() as con:
            purged = rescrub.purge(store, con, fingerprint)
    except rescrub.ConsumersBehindError as error:
        raise dg.Failure(str(error)) from error
    context.log.info("purged old versions: %s", purged)
    return dg.MaterializeResult(
        metadata={
            "scrub_rules": fingerprint,
            **{f"{table}_files_removed": files for table, (files, _) in purged.items()},
            **{f"{table}_log_files_removed": logs for table, (_, logs) in purged.items()},
        }
    )
