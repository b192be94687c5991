"""The stack's Dagster chores: its instance config, storage migration, and the runs it finds or leaves.

``dagster_yaml`` is written on every start; ``migrate`` creates or upgrades the storage (SQLite files
under ``DAGSTER_HOME``, or Postgres)
before the webserver and the daemon start (both racing to create it left one of them dead,
"alembic_version already exists"); runs an earlier, killed stack left in progress are marked
failed; on stop, the runs in progress are terminated the way the UI's Terminate button does.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("eventlake.stack")

#: Dagster's run, event-log and schedule storage in Postgres (``EVENTLAKE_DAGSTER_POSTGRES_URL``); the URL
#: (which may hold a password) is read from the environment, never written to the file.
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: EVENTLAKE_DAGSTER_POSTGRES_URL
"""

DAGSTER_YAML = """\
# Written by scripts/stack.py on every start.
telemetry:
  enabled: false
# One run at a time per code location: the pipeline's (hot path, replays, reprocessing: they share
# the DuckDB writer) and, beside it, the lake maintenance's (pipelines/defs/maintenance.py).
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: dagster/code_location
        value: eventlake
        limit: 1
      - key: dagster/code_location
        value: eventlake-maintenance
        limit: 1
# The daemon looks at the run queue every second (default 5 s): a queued run waited 2.5 s on average
# before its process even started (bench/bench_freshness.py's "run start").
run_queue:
  dequeue_interval_seconds: 1
# A run whose process never got going (stuck STARTING) is failed after 3 minutes; the bronze sensor
# restarts a hot path whose process died (its heartbeat stops, pipelines/defs/ingest.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
# The bronze sensor ticks every few seconds (~17,000 ticks a day): the daemon deletes old ticks
# (by default it keeps successful ones forever). Runs are deleted by the maintain_lake job.
retention:
  schedule:
    purge_after_days: 7
  sensor:
    purge_after_days:
      skipped: 1
      failure: 7
      success: 2
"""


def dagster_yaml(postgres: bool) -> str:
    """The instance's ``dagster.yaml``: :data:`DAGSTER_YAML`, with :data:`POSTGRES_STORAGE` when
    ``postgres`` (Dagster on Postgres, as a cluster's webserver, daemon and run hosts share it; else
    SQLite files under ``DAGSTER_HOME``, one machine)."""
    return DAGSTER_YAML + (POSTGRES_STORAGE if postgres else "")


def migrate(dagster_home: Path, env: dict[str, str], log: Path, cwd: Path) -> None:
    """Create or upgrade the Dagster storage of ``dagster_home`` (``dagster instance migrate``).

    Raises:
        subprocess.CalledProcessError: the migration failed (its output is in ``log``).
    """
    with log.open("ab") as out:
        subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
            cwd=cwd,
            env={**env, "DAGSTER_HOME": str(dagster_home)},
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class RunFailedError(RuntimeError):
    """Pipeline runs kept failing while gold was awaited: the sensor retried (with backoff) and they
    failed again, so waiting longer would only hit the timeout."""


def failed_run_check(dagster_home: Path, since: datetime, attempts: int = 3) -> Callable[[], None]:
    """A ``wait_for_gold`` check raising :class:`RunFailedError` once ``attempts`` runs created after
    ``since`` (UTC) have failed (the hot path's own runs aside: each failure of one fails its
    micro-batch too; and lake maintenance, which gold does not wait for), with the last one's failed
    steps' error messages (e.g. a malformed funnels file). One failure is not enough: the bronze
    sensor retries, a killed hot path is replaced.
    """
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))

    def check() -> None:
        records = [
            record
            for record in instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=since), limit=attempts * 2
            )
            if record.dagster_run.job_name not in ("hot_path", "maintain_lake")
        ]
        if len(records) < attempts:
            return
        run_id = records[0].dagster_run.run_id
        failures = [
            f"{event.step_key}: {_step_error(event.dagster_event.step_failure_data.error)}"
            for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            if event.dagster_event and event.dagster_event.step_failure_data.error
        ]
        raise RunFailedError(
            f"pipeline run {run_id} failed: {'; '.join(failures) or 'see its logs'}. Fix the cause and "
            "run again (or re-execute the run from the Dagster UI's Runs page)"
        )

    return check


def _in_progress() -> list[Any]:
    """Run statuses of a run that has a worker (or had one, if its stack was killed)."""
    import dagster as dg

    return [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def fail_orphaned_runs(dagster_home: Path) -> list[str]:
    """Mark runs an earlier stack left starting or running as failed; return their ids.

    At start-up no run worker of this data folder can be alive (the ports were free), so such a
    run was cut off by a stack that was killed. Left as STARTED, a ``hot_path`` run would make the
    bronze sensor wait for it forever. Their micro-batches are not lost: silver's watermark only
    moves when a batch commits, and the next run picks the rest up.
    """
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    orphaned = [record.dagster_run for record in instance.get_run_records(dg.RunsFilter(statuses=_in_progress()))]
    for run in orphaned:
        instance.report_run_failed(run, "the stack that ran it stopped before the run ended (scripts/stack.py)")
    return [run.run_id for run in orphaned]


def terminate_runs(dagster_home: Path, timeout_s: float = 30) -> None:
    """Terminate runs in progress (the long-lived ``hot_path`` above all) and wait until they end.

    Dagster's own termination (the UI's Terminate button): the run worker is interrupted, ends the
    step it is in (a micro-batch's commits are atomic and its watermark moves only after them) and
    records the run as canceled, so the next start does not find it running. Best effort: stopping
    the stack goes on whatever happens here.
    """
    import dagster as dg

    try:
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        runs = [
            record.dagster_run.run_id for record in instance.get_run_records(dg.RunsFilter(statuses=_in_progress()))
        ]
        for run_id in runs:
            instance.run_launcher.terminate(run_id)
        deadline = time.monotonic() + timeout_s
        while runs and time.monotonic() < deadline:
            time.sleep(0.5)
            left = instance.get_run_records(dg.RunsFilter(run_ids=runs, statuses=_in_progress()))
            runs = [record.dagster_run.run_id for record in left]
    except Exception as exc:  # noqa: BLE001 - stopping must go on (e.g. Dagster never started)
        logger.warning("could not terminate Dagster runs (%s); they are marked failed on the next start", exc)


def _step_error(error: Any) -> str:
    # Dagster wraps the step's own exception ("Error occurred while executing op …"): report the
    # first exception below its wrappers, which says what is wrong.
    while str(error.cls_name).startswith("Dagster") and error.cause is not None:
        error = error.cause
    return str(error.message).strip()
