"""Lifecycle Dagster objects: after a scrub rules change, the rescrub sensor and the purge of the
old file versions and log entries (``purged_history``)."""

import dagster as dg

from pipelines import rescrub
from pipelines.defs.ingest import ACTIVE_RUNS
from pipelines.defs.resources import LakeResource, SilverResource, WarehouseResource
from pipelines.rescrub import pending_tables
from pipelines.scrub_rules import load_rules, rules_fingerprint
from warehouse.lake.tables import EVENTS

#: The job the rescrub sensor starts (pipelines.defs.jobs).
RESCRUB_LAKE = "rescrub_lake"


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
    "the current ones (their eventlake.scrubRules property), e.g. a lake from before the ip_address rule.",
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
