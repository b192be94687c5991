"""Great Expectations validation of a micro-batch, and the valid/quarantine row split.

The split is read from the validation result itself: every row an expectation reports in
its ``unexpected_index_list`` is quarantined with that expectation's ``meta.check`` as
reason. Index labels (not id columns) are requested, which keeps GE fast when many rows fail.

A row-split suite's expectations are all row-wise (a row passes or is quarantined on its own:
:data:`ROW_WISE_EXPECTATIONS`, no ``mostly``): :func:`failed_checks` validates any cut of a
micro-batch's rows (a slice, a Ray partition) and :func:`split_rows` puts the cuts' per-row results
back together into the split and the suite's outcomes the whole batch gives.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

if TYPE_CHECKING:
    import great_expectations as gx

log = logging.getLogger(__name__)

#: Typed quarantine reasons an expectation may name in ``meta.reason`` (Snowplow's failed-event
#: types are the model: https://docs.snowplow.io/docs/fundamentals/failed-events/).
REASON_TYPES = frozenset(
    {
        "schema_violation",
        "timestamp_out_of_range",
        "size_violation",
        "bad_encoding",
        "duplicate_conflict",
        "type_conflict",
    }
)
#: The expectations a row-split suite may use: each judges a row by its own values alone (GE's column
#: map expectations, uniqueness excluded), so a batch can be validated in any cut of its rows.
ROW_WISE_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
    }
)
#: The column :func:`failed_checks` returns: the checks (``meta.check``) a row failed, in suite order; null when valid.
FAILED_CHECKS = "failed_checks"
#: The lake tables' suites (package data of the ``expectations`` folder, read with importlib.resources).
EXPECTATIONS_DIR = files("expectations")


class ValidationError(RuntimeError):
    """An expectation could not be evaluated (GE caught an exception): the batch is not split."""


@dataclass(frozen=True)
class CheckOutcome:
    """One expectation's result on a batch: its check name, success and unexpected row count."""

    check: str
    expectation: str
    column: str | None
    description: str
    success: bool
    unexpected_count: int
    element_count: int


@dataclass(frozen=True)
class SplitResult:
    """Which rows passed, and why the others failed.

    ``valid``: boolean mask over the frame's rows. ``failures``: row position → list of
    ``{"check", "reason", "expectation", "column"}`` dicts, for the invalid rows only.
    """

    valid: np.ndarray
    failures: dict[int, list[dict[str, Any]]]
    checks: list[CheckOutcome]


#: The suite whose failures split rows into quarantine (every expectation needs a typed reason);
#: the other suites (silver ``events``, each gold mart) check invariants of what was written.
ROW_SPLIT_SUITES = frozenset({"raw_events"})


def suite_path(name: str) -> Traversable:
    """The suite file of a lake table (``expectations/<name>.json``); a mart's is in its folder."""
    return EXPECTATIONS_DIR.joinpath(f"{name}.json")


def _read_suite(path: Traversable) -> dict[str, Any]:
    return _suite_document(path.read_text())


def _suite_document(text: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    name = document["name"]
    checks = [expectation.get("meta", {}).get("check") for expectation in document["expectations"]]
    for expectation, check in zip(document["expectations"], checks, strict=True):
        if not check:
            raise ValueError(f"suite {name}: every expectation needs meta.check ({expectation['type']})")
        if checks.count(check) > 1:
            raise ValueError(f"suite {name}: two expectations are named {check}")
        if name in ROW_SPLIT_SUITES and expectation["meta"].get("reason") not in REASON_TYPES:
            raise ValueError(f"suite {name}: {check} needs meta.reason, one of {sorted(REASON_TYPES)}")
        if name in ROW_SPLIT_SUITES and expectation["type"] not in ROW_WISE_EXPECTATIONS:
            raise ValueError(
                f"suite {name}: {check} is {expectation['type']}, not one of the per-row expectations "
                f"{sorted(ROW_WISE_EXPECTATIONS)}: each row passes or is quarantined on its own"
            )
        if name in ROW_SPLIT_SUITES and "mostly" in expectation.get("kwargs", {}):
            raise ValueError(f"suite {name}: {check} sets mostly, but each row passes or is quarantined on its own")
    return document


def load_suite(path: Traversable) -> gx.ExpectationSuite:
    """Load the suite file ``path`` (GE suite JSON, see :func:`suite_path`) as an expectation suite.

    Raises:
        FileNotFoundError: when the suite file is missing.
        ValueError: when an expectation has no ``meta.check`` name or shares it, or (row-split
            suites) has no ``meta.reason`` from :data:`REASON_TYPES`, is not one of
            :data:`ROW_WISE_EXPECTATIONS` or sets ``mostly``.
    """
    return _suite(path.read_text())


@lru_cache(maxsize=64)
def _suite(text: str) -> gx.ExpectationSuite:
    """The suite of a suite file's ``text``, built once per process and content: building one cost
    ~10% of a micro-batch when each mart built its own on every run (validation only reads it)."""
    # Imported here: great_expectations takes ~5 s and ~250 MB to import, and the Dagster
    # code location (webserver, daemon, sensor) must load without it.
    import great_expectations as gx

    return gx.ExpectationSuite(**_suite_document(text))


def check_names(path: Traversable) -> list[tuple[str, str]]:
    """``(check name, description)`` of every expectation of the suite file ``path``, in order (no GE import)."""
    return [(e["meta"]["check"], e["meta"].get("description", "")) for e in _read_suite(path)["expectations"]]


def suite_columns(suite: gx.ExpectationSuite) -> list[str]:
    """The columns ``suite``'s expectations read, sorted (to validate only what is needed)."""
    return sorted({c for e in suite.expectations for c in _columns(e)})


def _columns(expectation: Any) -> list[str]:
    kwargs = expectation.configuration.kwargs
    return [kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs] + list(
        kwargs.get("column_list", [])
    )


#: GE's ephemeral context and batch definition are shared by the process and not thread-safe: two
#: validations at once (Daft may run a stage's partitions in threads of one worker) mixed their
#: results up: wrong rows quarantined, or "inconsistent cache values" (found by the breaker).
_GE_LOCK = threading.Lock()


@cache
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GE 1.24 fingerprints every in-memory batch under HASH_THRESHOLD bytes (1 GB) by hashing each
    # cell, for batch markers an ephemeral context never keeps: 1-2 µs per row, about a tenth of
    # the silver step. A threshold of 0 skips only that marker; results are unchanged.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("micro_batches")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")


def split_by_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> SplitResult:
    """Validate ``frame`` (RangeIndex) against ``suite`` and split its rows: only a
    :data:`ROW_SPLIT_SUITES` suite reports which rows failed (GE's ``COMPLETE`` result format); the
    others check invariants, and their result has every row valid, only ``checks`` (``BASIC``: the
    counts without the row lists, ~35% less of GE's fixed ~50-200 ms per validation).

    Raises:
        ValidationError: when a column the suite reads is missing, or GE reports an exception
            for an expectation (a type error…): failing closed instead of waving the batch through.
    """
    # GE 1.24 reports a not-null expectation on a missing column as a success: check first.
    missing = sorted(set(suite_columns(suite)) - set(frame.columns))
    if missing:
        raise ValidationError(f"suite {suite.name}: the frame lacks columns {missing}")
    frame = frame.reset_index(drop=True)
    valid = np.ones(len(frame), dtype=bool)
    failures: dict[int, list[dict[str, Any]]] = {}
    checks: list[CheckOutcome] = []
    if frame.empty:
        untouched = [
            CheckOutcome(
                meta["check"], e.expectation_type, getattr(e, "column", None), meta.get("description", ""), True, 0, 0
            )
            for e in suite.expectations
            for meta in [e.meta or {}]
        ]
        return SplitResult(valid, failures, untouched)
    result_format = "COMPLETE" if suite.name in ROW_SPLIT_SUITES else "BASIC"
    with _GE_LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={"result_format": result_format, "partial_unexpected_count": 0})
    for outcome in result.results:
        config = outcome.expectation_config
        meta = config.meta or {}
        check = meta["check"]
        column = config.kwargs.get("column")
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise ValidationError(
                f"expectation {check} could not run: {outcome.exception_info.get('exception_message')}"
            )
        unexpected = outcome.result.get("unexpected_index_list") or []
        reason = {"check": check, "reason": meta.get("reason"), "expectation": config.type, "column": column}
        for position in unexpected:
            valid[position] = False
            failures.setdefault(int(position), []).append(reason)
        checks.append(
            CheckOutcome(
                check,
                config.type,
                column,
                meta.get("description", ""),
                bool(outcome.success),
                int(outcome.result.get("unexpected_count") or 0),
                int(outcome.result.get("element_count") or len(frame)),
            )
        )
    return SplitResult(valid, failures, checks)


def failed_checks(frame: pl.DataFrame, suite: gx.ExpectationSuite) -> pl.DataFrame:
    """A per-row stage (:mod:`pipelines.parallel`): validate ``frame``'s rows against the row-split
    ``suite`` (:func:`split_by_suite`); returns one column, :data:`FAILED_CHECKS`
    (``List[String]``): the checks each row failed, in suite order, null for a valid row.

    Raises:
        ValidationError: as :func:`split_by_suite`.
    """
    split = split_by_suite(frame.to_pandas(), suite)
    order = {check: position for position, (check, _) in enumerate(_reasons(suite))}
    failed = sorted((row, order[f["check"]], f["check"]) for row, fs in split.failures.items() for f in fs)
    per_row = (
        pl.DataFrame(
            {"row": [r for r, _, _ in failed], FAILED_CHECKS: [c for _, _, c in failed]},
            schema={"row": pl.Int64, FAILED_CHECKS: pl.String},
        )
        .group_by("row", maintain_order=True)
        .agg(FAILED_CHECKS)
    )
    rows = pl.int_range(frame.height, dtype=pl.Int64, eager=True).alias("row").to_frame()
    return rows.join(per_row, on="row", how="left", maintain_order="left").select(FAILED_CHECKS)


def split_rows(failed: pl.Series, suite: gx.ExpectationSuite) -> SplitResult:
    """The split and outcomes of a micro-batch from :func:`failed_checks`' column over all its rows
    (computed whole or by parts: the same result). An expectation's unexpected count is the rows
    that failed it, its element count the rows, and it succeeded when no row failed it (a row-split
    suite has no ``mostly``): what GE reports for the whole batch at once."""
    reasons = dict(_reasons(suite))
    invalid = failed.is_not_null()
    positions = invalid.arg_true().to_list()
    failures = {
        int(row): [reasons[check] for check in checks]
        for row, checks in zip(positions, failed.filter(invalid).to_list(), strict=True)
    }
    counts = failed.explode().drop_nulls().value_counts()
    unexpected = dict(zip(counts[failed.name].to_list(), counts["count"].to_list(), strict=True))
    checks = [
        CheckOutcome(
            check,
            reason["expectation"],
            reason["column"],
            (e.meta or {}).get("description", ""),
            not unexpected.get(check),
            int(unexpected.get(check, 0)),
            len(failed),
        )
        for e, (check, reason) in zip(suite.expectations, reasons.items(), strict=True)
    ]
    return SplitResult((~invalid).to_numpy(), failures, checks)


def _reasons(suite: gx.ExpectationSuite) -> list[tuple[str, dict[str, Any]]]:
    # (check, the failure entry a row gets) per expectation, in suite order: the entry as
    # split_by_suite builds it (whose lists follow GE's result order, not the suite's).
    reasons = []
    for expectation in suite.expectations:
        meta = expectation.meta or {}
        entry = {
            "check": meta["check"],
            "reason": meta.get("reason"),
            "expectation": expectation.expectation_type,
            "column": expectation.configuration.kwargs.get("column"),
        }
        reasons.append((meta["check"], entry))
    return reasons


def checks_by_part(parts: Iterable[pd.DataFrame], suite: gx.ExpectationSuite) -> list[CheckOutcome]:
    """The suite's outcomes over the union of ``parts``, validating one part at a time, so memory
    follows the largest part instead of the whole table (pandas and GE hold several copies of it).

    Per expectation: success if it held on every part; unexpected and element counts summed. Exact
    for row-wise expectations; a uniqueness expectation is exact only when rows that could collide
    are in the same part (the caller cuts by a column of every grain). No part: as an empty frame.

    Raises:
        ValidationError: as :func:`split_by_suite`, or when two parts' results do not list the same
            expectations in the same order (they are merged by position).
    """
    merged: list[CheckOutcome] | None = None
    for part in parts:
        checks = split_by_suite(part, suite).checks
        if merged is not None and [c.check for c in checks] != [c.check for c in merged]:
            raise ValidationError(f"suite {suite.name}: the parts' results came back in different orders")
        merged = (
            checks
            if merged is None
            else [
                replace(
                    total,
                    success=total.success and one.success,
                    unexpected_count=total.unexpected_count + one.unexpected_count,
                    element_count=total.element_count + one.element_count,
                )
                for total, one in zip(merged, checks, strict=True)
            ]
        )
    if merged is None:
        return split_by_suite(pd.DataFrame(columns=suite_columns(suite)), suite).checks
    return merged
