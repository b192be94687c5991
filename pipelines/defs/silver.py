"""Silver Dagster objects: the silver step's multi-asset (silver ``events`` and the quarantine, with
their checks) and the users source (``user_attributes``)."""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
from dagster._core.definitions.metadata import RawMetadataValue
from deltalake.exceptions import DeltaError
from pydantic import Field

from pipelines import reprocess, rescrub, silver
from pipelines.defs.checks import INVARIANTS_CHECK, suite_check, suite_check_spec
from pipelines.defs.ingest import raw_events
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from pipelines.user_attributes import load_user_attributes
from pipelines.validation import suite_path
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS, USER_ATTRIBUTES

#: Asset check of ``events`` validating each bronze micro-batch with ``expectations/raw_events.json``.
RAW_SUITE_CHECK = "raw_events_expectations"

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


def silver_events_asset(freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    """The silver step's multi-asset: silver ``events`` and the quarantine ``rejected_events``, with the
    raw suite's check, the batch checks and silver's invariants."""

    @dg.multi_asset(
        name="silver_events",
        specs=[
            dg.AssetSpec(
                EVENTS.name,
                deps=[raw_events],
                group_name="silver",
                kinds={"deltalake", "polars"},
                freshness_policy=freshness,
                description="Silver: validated, scrubbed, enriched events, one row per event_id "
                "(Delta, by event_date).",
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
            suite_check_spec(
                EVENTS.name, RAW_SUITE_CHECK, suite_path(RAW_EVENTS.name), f"expectations/{RAW_EVENTS.name}.json"
            ),
            *(dg.AssetCheckSpec(name, asset=EVENTS.name, description=text) for name, text in BATCH_CHECKS),
            suite_check_spec(
                EVENTS.name, INVARIANTS_CHECK, suite_path(EVENTS.name), f"expectations/{EVENTS.name}.json"
            ),
        ],
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2),
    )
    def silver_events(
        context: dg.AssetExecutionContext,
        config: SilverConfig,
        lake: LakeResource,
        silver_step: SilverResource,
        warehouse: WarehouseResource,
    ) -> Iterator[object]:
        """Run the silver step (:mod:`pipelines.silver`) in the configured mode and report it."""
        yield from _silver_run(context, config, lake.lake(), silver_step, warehouse)

    return silver_events


def _silver_run(
    context: dg.AssetExecutionContext,
    config: SilverConfig,
    store: Lake,
    silver_step: SilverResource,
    warehouse: WarehouseResource,
) -> Iterator[object]:
    """One silver run and its report (``warehouse``: a rescrub records there what gold must
    recompute, :class:`pipelines.rescrub.GoldChanges`).

    Raises:
        dagster.Failure: an unknown mode, or reprocess without a valid day range.
    """
    rules = silver_step.rules()
    run_id = context.run.run_id
    if config.mode == "ingest":
        stats = silver.ingest(store, rules, run_id, silver_step.max_batch_rows)
    elif config.mode == "replay":
        stats = silver.replay_quarantine(store, rules, run_id)
    elif config.mode == "reprocess":
        first, last = _day_range(config)
        stats = reprocess.reprocess(store, rules, run_id, first, last)
    elif config.mode == "rescrub":
        options = warehouse.options()
        quality = next((mart for mart in options.marts.values() if mart.spec.kind == "quality"), None)
        with warehouse.connect() as con:
            gold = rescrub.GoldChanges(
                con,
                rules.scrubber.rules.fingerprint,
                options.reporting_timezone,
                quality.sql("select_silver_counts") if quality else None,
            )
            stats = rescrub.rescrub(store, rules, gold)
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
    yield dg.MaterializeResult(asset_key=EVENTS.name, metadata=_silver_metadata(stats, rules))
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
    yield suite_check(EVENTS.name, RAW_SUITE_CHECK, RAW_EVENTS.name, stats.checks, dg.AssetCheckSeverity.WARN)
    yield from batch_checks(stats, silver_step.quarantine_warn_rate, silver_step.quarantine_error_rate)
    # Invariants of what was written (expectations/events.json): a failure is a pipeline bug.
    yield suite_check(EVENTS.name, INVARIANTS_CHECK, EVENTS.name, stats.silver_checks, dg.AssetCheckSeverity.ERROR)


def _silver_metadata(stats: silver.BatchStats, rules: silver.Rules) -> dict[str, RawMetadataValue]:
    """The materialization metadata of silver ``events`` after one run."""
    return {
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
        "erased_rows": stats.erased,  # events of erased people, dropped (pipelines.erasure)
        "beyond_retention_rows": stats.expired,  # events of days the cold tier's retention deleted, dropped
        "replaced_days": stats.replaced_days,
        "processes": stats.processes,  # the calling one plus workers for the per-row stages (Ray: its CPUs)
        "engine": stats.engine,  # where they ran: local, processes or ray
        "pseudonymized_ids": rules.pseudonymizer.count,
        # distinct URLs/locations are scrubbed once, so those count distinct values, not rows
        "scrub_report": dg.MetadataValue.json(dict(sorted(rules.scrubber.counts.items()))),
    }


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


def user_attributes_asset(freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    """Silver ``user_attributes``: the users source as a slowly changing dimension."""

    @dg.asset(
        name=USER_ATTRIBUTES.name,
        group_name="silver",
        kinds={"deltalake"},
        freshness_policy=freshness,
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
    def user_attributes(
        context: dg.AssetExecutionContext, lake: LakeResource, silver_step: SilverResource
    ) -> Iterator[object]:
        """Load the users source (:func:`pipelines.user_attributes.load_user_attributes`).

        A source that cannot be read or validated does not stop the run: the table keeps its last good
        content (the breakdown mart and the dashboards go on with it) and the ERROR check reports why.
        """
        store = lake.lake()
        source = silver_step.users_path or "(none)"
        users_path = Path(silver_step.users_path) if silver_step.users_path else None
        try:
            loaded = load_user_attributes(store, users_path, silver_step.pseudonymizer(), context.run.run_id)
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

    return user_attributes
