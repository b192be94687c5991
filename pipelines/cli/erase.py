"""``eventlake-erase``: erase a person (the right to erasure) from every table and tier.

The user id is hashed here with the pseudonym key (:func:`pipelines.erasure.erasure_request`), and
only that hash goes to the ``erase_person`` Dagster job, queued with the pipeline's other runs (it
writes silver and gold, which have one writer at a time). The command waits for the run and prints
the rows removed per table, from the erasure's audit row. While the stack is stopped,
``--in-process`` erases here instead (gold recomputes the person's days when the stack starts).

Example: ``eventlake-erase --user alice@example.com --app shop``."""

from __future__ import annotations

import argparse
import sys
import time

import httpx
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from pipelines import erasure
from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from pipelines.pseudonyms import silver_pseudonymizer
from pipelines.scrub_rules import DEFAULT_RULES_PATH
from warehouse import gold
from warehouse.settings import Settings, read_settings

#: The code location that holds the job (workspace.yaml).
LOCATION = "eventlake"
_DONE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """``eventlake-erase --user ID [--app APP] [--in-process] [--timeout S]``.

    Exit status 0: erased (rows per table on stdout); 1: nothing of the user was found, or the run
    failed (its id on stderr); 2: Dagster is not answering (start the stack, or ``--in-process``),
    or ``--in-process`` while it answers.
    """
    parser = argparse.ArgumentParser(prog="eventlake-erase", description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", required=True, help="the user id as clients send it (userId / user)")
    parser.add_argument("--app", help="erase only this app's data (default: every app)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="erase in this process, while the stack is stopped (refused while Dagster answers)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    args = parser.parse_args(argv)
    settings = read_settings("eventlake-erase")
    secret = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    pseudonymizer = silver_pseudonymizer(
        secret,
        settings.pseudonym_key_path,
        settings.scrub_rules_path or DEFAULT_RULES_PATH,
        settings.pseudonymize_all_ids,
    )
    try:
        request = erasure.erasure_request(pseudonymizer, args.user, args.app)
    except ValueError as error:
        parser.error(str(error))
    url = f"http://127.0.0.1:{settings.dagster_port}"
    if args.in_process:
        if _answers(url):
            sys.stderr.write(f"eventlake-erase: Dagster answers at {url}: the stack runs; erase without --in-process\n")
            return 2
        options = settings.gold_options()
        warehouse = settings.warehouse_file
        with gold.connect(warehouse, memory_limit=settings.warehouse_memory_limit, marts=options.marts) as con:
            erasure.erase(settings.lake(), con, pseudonymizer, request, options.reporting_timezone)
        return _report(settings, request, "in this process", DagsterRunStatus.SUCCESS)
    config = {"request_id": request.request_id, "user_hash": request.user_hash, "app": request.app}
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=settings.dagster_port)
        run_config = {"ops": {"erase_rows": {"config": config}}}
        run_id = client.submit_job_execution(
            erasure.ERASE_JOB, repository_location_name=LOCATION, run_config=run_config
        )
    except DagsterGraphQLClientError:
        sys.stderr.write(
            f"eventlake-erase: Dagster is not answering at {url}: start the stack (`make up`), "
            "or pass --in-process while it is stopped\n"
        )
        return 2
    try:
        status = _wait(client, run_id, args.timeout)
    except TimeoutError:
        sys.stderr.write(
            f"eventlake-erase: run {run_id} still running after {args.timeout:.0f} s: {url}/runs/{run_id}\n"
        )
        return 1
    return _report(settings, request, f"run {run_id}", status)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait(client: DagsterGraphQLClient, run_id: str, timeout: float) -> DagsterRunStatus:
    deadline = time.monotonic() + timeout
    while (status := client.get_run_status(run_id)) not in _DONE:
        if time.monotonic() > deadline:
            raise TimeoutError(run_id)
        time.sleep(1)
    return status


def _report(settings: Settings, request: erasure.ErasureRequest, where: str, status: DagsterRunStatus) -> int:
    scope = f"app {request.app}" if request.app else "any app"
    if status != DagsterRunStatus.SUCCESS:
        sys.stderr.write(f"eventlake-erase: the erasure ({where}) ended {status.value}: see its logs in Dagster\n")
        return 1
    lake = settings.lake()
    audit = erasure.audit_row(lake, request.request_id)
    if audit is None or not audit["found"]:
        again = " (it was erased before)" if erasure.erased_before(lake, request.user_hash) else ""
        sys.stderr.write(
            f"eventlake-erase: no event, link or attribute of this user in {scope}{again}: nothing erased\n"
        )
        return 1
    sys.stdout.write(f"erased the user ({scope}): request {request.request_id}, {where}\n")
    for table, rows in erasure.removed_rows(audit).items():
        sys.stdout.write(f"  {table}: {rows} rows\n")
    sys.stdout.write("gold recomputes the user's days at its next refresh (while the stack runs: seconds)\n")
    return 0
