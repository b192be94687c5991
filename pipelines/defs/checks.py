"""Asset checks from Great Expectations suites: one check per suite, its expectations in the metadata."""

from __future__ import annotations

from datetime import date
from importlib.resources.abc import Traversable

import dagster as dg
import duckdb

from pipelines.validation import CheckOutcome, check_names, checks_by_part, load_suite, split_by_suite, suite_columns

#: Asset check of silver ``events`` and of every gold mart: its suite of invariants on what the run wrote.
INVARIANTS_CHECK = "invariants"


def suite_check_spec(
    asset: str, check: str, suite: Traversable, shown_as: str, after: tuple[str, ...] = ()
) -> dg.AssetCheckSpec:
    """The spec of the one asset check that runs the suite file ``suite`` (shown as ``shown_as``, its
    path in the repository); its description lists the expectations (their ``meta.check`` names).
    ``after``: assets the check also waits for (``additional_deps``)."""
    names = ", ".join(name for name, _ in check_names(suite))
    return dg.AssetCheckSpec(check, asset=asset, description=f"{shown_as}: {names}.", additional_deps=after)


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


def validate_mart(
    con: duckdb.DuckDBPyConnection,
    mart: str,
    suite_file: Traversable,
    part_rows: int,
    silver_version: int | None = None,
) -> list[CheckOutcome]:
    """Validate a mart against its suite of invariants (``suite_file``, its folder's
    ``expectations.json``): the whole table, or
    with ``silver_version`` only the rows that refresh rewrote (their ``silver_version`` lineage), so
    the check's cost follows the new data, not the mart's history (the grain's uniqueness over the
    whole table is the table's primary key, or the refresh's whole-day rewrites for the unkeyed ones).

    A mart with a ``day`` column (in every such grain) is read in parts of whole days of at most
    ``part_rows`` rows (``EVENTLAKE_VALIDATION_PART_ROWS``) (:func:`pipelines.validation.checks_by_part`): a first
    build rewrites every row, and GE on one pandas frame of a 50M-event history's sessions needed
    more than the machine's 23 GB.
    """
    suite = load_suite(suite_file)
    rows = con.table(mart)
    if silver_version is not None:
        rows = rows.filter(duckdb.ColumnExpression("silver_version") == duckdb.ConstantExpression(silver_version))
    columns = suite_columns(suite)
    if "day" not in rows.columns:
        return split_by_suite(rows.select(*columns).df(), suite).checks
    day = duckdb.ColumnExpression("day")
    counts = rows.aggregate("day, count(*)", "day").order("day nulls first").fetchall()
    # A not-null expectation must see rows without a day: they are a part of their own.
    parts = [day.isnull()] if counts and counts[0][0] is None else []
    runs: list[list[date]] = []  # consecutive days, whole, up to the limit (a larger day alone)
    size = 0
    for value, n in counts[len(parts) :]:
        if not runs or size + n > part_rows:
            runs.append([])
            size = 0
        runs[-1].append(value)
        size += n
    parts += [day.between(duckdb.ConstantExpression(run[0]), duckdb.ConstantExpression(run[-1])) for run in runs]
    return checks_by_part((rows.filter(part).select(*columns).df() for part in parts), suite)
