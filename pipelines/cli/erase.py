"""``eventlake-erase``: erase a person (the right to erasure) from every table and tier.

The user id is hashed here with the pseudonym key (:func:`pipelines.erasure.erasure_request`), and
only that hash goes to the ``erase_person`` Dagster job, queued with the pipeline's other runs (it
writes silver and gold, which have one writer at a time). The command waits for the run and prints
the rows removed per table, from the erasure's audit row.

Example: ``eventlake-erase --user alice@example.com --app shop``."""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from pipelines import erasure
from pipelines.defs import build_definitions
from pipelines.defs.lifecycle import ERASE_PERSON
from pipelines.defs.resources import SilverResource
from warehouse.settings import Settings, read_settings

#: The code location that holds the job (workspace.yaml).
LOCATION = "eventlake"
_DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def main(argv: list[str] | None = None) -> int:
    """``eventlake-erase --user ID [--app APP] [--in-process] [--timeout S]``.

    Exit status 0: erased (rows per table on stdout); 1: nothing of the user was found, or the run
    failed (its id on stderr); 2: Dagster is not answering (start the stack, or ``--in-process``).
    """
    parser = argparse.ArgumentParser(prog="eventlake-erase", description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", required=True, help="the user id as clients send it (userId / user)")
    parser.add_argument("--app", help="erase only this app's data (default: every app)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the job in this process (the stack must be stopped: gold has one writer)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    args = parser.parse_args(argv)
    settings = read_settings("eventlake-erase")
    try:
        request = erasure.erasure_request(SilverResource.from_settings(settings).pseudonymizer(), args.user, args.app)
    except ValueError as error:
        parser.error(str(error))
    config = {"request_id": request.request_id, "user_hash": request.user_hash, "app": request.app}
    run_config = {"ops": {"erase_rows": {"config": config}}}
    if args.in_process:
        result = (
            build_definitions(settings)
            .resolve_job_def(ERASE_PERSON)
            .execute_in_process(run_config=run_config, instance=dg.DagsterInstance.get(), raise_on_error=False)
        )
        status, run_id = (dg.DagsterRunStatus.SUCCESS if result.success else dg.DagsterRunStatus.FAILURE), result.run_id
    else:
        url = f"http://127.0.0.1:{settings.dagster_port}"
        try:
            client = DagsterGraphQLClient("127.0.0.1", port_number=settings.dagster_port)
            run_id = client.submit_job_execution(ERASE_PERSON, repository_location_name=LOCATION, run_config=run_config)
            status = _wait(client, run_id, args.timeout)
        except DagsterGraphQLClientError as error:
            sys.stderr.write(
                f"eventlake-erase: Dagster at {url} did not take the run ({error}); start the stack with "
                "`make up`, or pass --in-process while it is stopped\n"
            )
            return 2
        except TimeoutError:
            sys.stderr.write(
                f"eventlake-erase: run {run_id} still running after {args.timeout:.0f} s: {url}/runs/{run_id}\n"
            )
            return 1
    return _report(settings, request, run_id, status)


def _wait(client: DagsterGraphQLClient, run_id: str, timeout: float) -> dg.DagsterRunStatus:
    deadline = time.monotonic() + timeout
    while (status := client.get_run_status(run_id)) not in _DONE:
        if time.monotonic() > deadline:
            raise TimeoutError(run_id)
        time.sleep(1)
    return status


def _report(settings: Settings, request: erasure.ErasureRequest, run_id: str, status: dg.DagsterRunStatus) -> int:
    scope = f"app {request.app}" if request.app else "every app"
    if status != dg.DagsterRunStatus.SUCCESS:
        sys.stderr.write(f"eventlake-erase: the erasure run {run_id} ended {status.value}: see its logs in Dagster\n")
        return 1
    audit = erasure.audit_row(settings.lake(), request.request_id)
    if audit is None or not audit["found"]:
        sys.stderr.write(f"eventlake-erase: no event, link or attribute of this user in {scope}: nothing erased\n")
        return 1
    removed = erasure.removed_rows(audit)
    sys.stdout.write(f"erased the user ({scope}): request {request.request_id}, run {run_id}\n")
    for table, rows in removed.items():
        sys.stdout.write(f"  {table}: {rows} rows\n")
    sys.stdout.write("gold recomputes the user's days at its next refresh\n")
    return 0
