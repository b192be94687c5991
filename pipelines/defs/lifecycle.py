"""Lifecycle Dagster objects: after a scrub rules change, the rescrub sensor and the purge of the
old file versions and log entries (``purged_history``); the tiering job that moves silver's old
partitions to the cold root and expires what is past its retention (``tier_lake``), and its schedule;
the erasure of a person (``erase_person``, started by ``eventlake-erase``)."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines import erasure, rescrub
from pipelines.defs.ingest import ACTIVE_RUNS
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from pipelines.maintenance import tier_lake
from pipelines.rescrub import pending_tables
from pipelines.scrub_rules import load_rules, rules_fingerprint
from warehouse.lake.tables import EVENTS
from warehouse.lake.tiers import TierPolicy
from warehouse.settings import Settings

#: The job the rescrub sensor starts (pipelines.defs.jobs).
RESCRUB_LAKE = "rescrub_lake"
TIER_LAKE = "tier_lake"
ERASE_PERSON = erasure.ERASE_JOB


@dg.asset(
    deps=["serving_snapshot"],
    group_name="maintenance",
    kinds={"deltalake"},
    description="Silver's and the quarantine's history after a rescrub: the file versions and log entries "
    "from before it removed, and the scrub rules' fingerprint recorded (pipelines.rescrub).",
)
def purged_history(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, silver_step: SilverResource
) -> dg.MaterializeResult:
    """Purge silver's and the quarantine's old versions once gold has read the current ones.

    Raises:
        dagster.Failure: a gold mart has not read the tables' current versions (the purge would
            remove what its next change feed reads); nothing was removed.
    """
    store = lake.lake()
    fingerprint = load_rules(silver_step.rules_path()).fingerprint
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


@dg.sensor(
    job_name=RESCRUB_LAKE,
    # A rules change is rare and its rescrub long: no need to read two tables' metadata every 2 s.
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts rescrub_lake when silver or the quarantine was scrubbed with other scrub rules than "
    "the current ones, or written before silver's current derived columns (their eventlake.scrubRules property), "
    "e.g. a lake from before the ip_address rule or the asset flag.",
)
def rescrub_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, silver_step: SilverResource
) -> dg.RunRequest | dg.SkipReason:
    """Request one rescrub per rules fingerprint and silver version while a table lags the rules.

    The rules file is read on every tick, so editing it in place needs no restart. The key names
    silver's version too: a rescrub that failed is requested again once silver moved.
    """
    fingerprint = rules_fingerprint(silver_step.rules_path())
    store = lake.lake()
    pending = pending_tables(store, fingerprint)
    if not pending:
        return dg.SkipReason(f"silver and the quarantine are scrubbed with rules {fingerprint}")
    if context.instance.get_run_records(dg.RunsFilter(job_name=RESCRUB_LAKE, statuses=ACTIVE_RUNS), limit=1):
        return dg.SkipReason("a rescrub_lake run is in flight")
    names = ", ".join(table.name for table in pending)
    context.log.info("%s not scrubbed with rules %s: requesting rescrub_lake", names, fingerprint)
    return dg.RunRequest(run_key=f"rescrub@{fingerprint}@silver-v{store.version(EVENTS)}")


class TierConfig(dg.Config):
    """The tier and retention policy (:class:`warehouse.lake.tiers.TierPolicy`; the job's defaults come
    from the ``EVENTLAKE_SILVER_HOT_DAYS``, ``_SILVER_COLD_DAYS``, ``_BRONZE_TTL_DAYS`` and
    ``_QUARANTINE_TTL_DAYS`` settings)."""

    hot_days: int = Field(ge=1, description="Silver's event days older than this (UTC days) move to the cold root.")
    cold_days: int = Field(ge=0, description="Silver's event days older than this leave the cold root (0: never).")
    bronze_ttl_days: int = Field(ge=0, description="Bronze's received days older than this are deleted once read.")
    quarantine_ttl_days: int = Field(ge=0, description="The quarantine's received days older than this are deleted.")


@dg.op(
    description="Move silver's event days past the hot horizon to the cold root (copy, verify, then delete), and "
    "delete what is past its retention: silver's cold days, bronze's and the quarantine's received days."
)
def tier_partitions(
    context: dg.OpExecutionContext, config: TierConfig, lake: LakeResource, warehouse: WarehouseResource
) -> dg.Output[int]:
    """One observation per table: silver's files and bytes per tier with the partitions and rows moved,
    bronze's and the quarantine's expired partitions. Output: how many partitions moved.

    Raises:
        warehouse.lake.tiers.TierMoveError: a partition could not be moved (it stays in hot; the next run tries).
    """
    policy = TierPolicy(config.hot_days, config.cold_days, config.bronze_ttl_days, config.quarantine_ttl_days)
    report = tier_lake(lake.lake(), Path(warehouse.serving_path), policy, datetime.now(UTC).date())
    tiers = {
        f"{tier}_{name}": getattr(state, name)
        for tier, state in report.states.items()
        if state is not None
        for name in ("files", "bytes", "version")
    }
    silver = {
        **tiers,
        "moved_partitions": len(report.moved),
        "moved_rows": sum(move.rows for move in report.moved),
        "expired_cold_partitions": len(report.expired.get("cold_events", [])),
    }
    context.log_event(dg.AssetObservation(asset_key=EVENTS.name, metadata=silver))
    for table, expired in report.expired.items():
        if table != "cold_events":
            context.log_event(dg.AssetObservation(asset_key=table, metadata={"expired_partitions": len(expired)}))
    if report.erased_bronze_rows:
        context.log.info("deleted %d bronze rows of erased people from closed days", report.erased_bronze_rows)
    moved = [move.partition for move in report.moved]
    metadata = {**silver, "moved": moved, "expired": dg.MetadataValue.json(report.expired)}
    return dg.Output(len(moved), metadata={**metadata, "erased_bronze_rows": report.erased_bronze_rows})


def tier_job(settings: Settings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """``tier_lake`` (:func:`tier_partitions`, the settings' policy as the launchpad's defaults) and its
    schedule (``tiering_cron``, running by default). It runs in the pipeline's code location, so never
    beside a silver write (the move deletes a partition it copied: nothing may append to it meanwhile)."""
    config = TierConfig(
        hot_days=settings.silver_hot_days,
        cold_days=settings.silver_cold_days,
        bronze_ttl_days=settings.bronze_ttl_days,
        quarantine_ttl_days=settings.quarantine_ttl_days,
    )

    @dg.job(
        name=TIER_LAKE,
        executor_def=dg.in_process_executor,
        config={"ops": {"tier_partitions": {"config": config.model_dump()}}},
        description="Tiers and retention: silver's old event days to the cold root, expired partitions deleted.",
    )
    def tier_lake_job() -> None:
        tier_partitions()

    schedule = dg.ScheduleDefinition(
        job=tier_lake_job,
        cron_schedule=settings.tiering_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return tier_lake_job, schedule


class ErasureConfig(dg.Config):
    """One erasure request (:class:`pipelines.erasure.ErasureRequest`): no personal data, only the
    keyed hash ``eventlake-erase`` computed of the user id."""

    request_id: str = Field(pattern="^[0-9a-f]{32}$", description="The request's id (eventlake-erase makes one).")
    user_hash: str = Field(pattern="^[0-9a-f]{32}$", description="Keyed hash of the user id in silver form.")
    app: str | None = Field(default=None, description="Only this app's data; none: every app.")


@dg.op(
    description="Erase a person (a user id and every id linked to it) from bronze, silver's hot and cold tiers, "
    "the quarantine, user_attributes and gold's person-level state; gold recomputes their days next."
)
def erase_rows(
    context: dg.OpExecutionContext,
    config: ErasureConfig,
    lake: LakeResource,
    warehouse: WarehouseResource,
    silver_step: SilverResource,
) -> dg.Output[int]:
    """Output: rows removed in all (``found`` false in the metadata: the user was nowhere).

    Raises:
        deltalake.exceptions.DeltaError, duckdb.Error: a step failed; the same request run again finishes it.
    """
    request = erasure.ErasureRequest(config.request_id, config.user_hash, config.app)
    with warehouse.connect() as con:
        report = erasure.erase(
            lake.lake(), con, silver_step.pseudonymizer(), request, warehouse.options().reporting_timezone
        )
    removed = sum(report.removed.values())
    context.log.info("erasure %s: %s", request.request_id, report.removed if report.found else "user not found")
    metadata = {"found": report.found, "tombstones": report.tombstones, **report.removed}
    return dg.Output(removed, metadata={"request_id": request.request_id, **metadata})


@dg.job(
    name=ERASE_PERSON,
    executor_def=dg.in_process_executor,
    description="Right to erasure: a person's rows deleted from every table and tier (pipelines.erasure); "
    "started by eventlake-erase.",
)
def erase_person_job() -> None:
    """One op: :func:`erase_rows`."""
    erase_rows()
