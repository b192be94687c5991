"""``eventlake-status``: how far the served gold numbers have caught up with bronze, and DAU/MAU per app.

Reads the serving snapshot (``warehouse.serving``): a read-only file replaced atomically, so
this never contends with a pipeline run for the warehouse's write lock, and what it prints is
exactly what the dashboards show.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS
from warehouse.marts import Mart, catalog
from warehouse.settings import read_settings


class GoldNotReadyError(TimeoutError):
    """Gold did not cover the requested bronze version within the time limit."""


@dataclass(frozen=True)
class AppSummary:
    """DAU/MAU of one (app, source) on its last day with data (a day of the reporting time zone)."""

    app: str
    source: str
    days: int
    last_day: date
    dau_last_day: int
    avg_dau: float
    mau_rolling_30d: int
    mau_calendar_month: int


def covered_bronze_version(path: Path, marts: Mapping[str, Mart] | None = None) -> int | None:
    """The bronze version every incremental mart of ``marts`` (default: the shipped ones) covers in the
    serving snapshot at ``path``, or ``None`` before the first snapshot."""
    incremental = [name for name, mart in (marts or catalog()).items() if mart.spec.kind == "incremental"]
    marks = gold.served_watermarks(path, incremental)
    if marks is None or len(marks) < len(incremental):
        return None
    return min(mark.bronze_version for mark in marks.values())


def wait_for_gold(
    path: Path,
    bronze_version: int,
    timeout_s: float,
    poll_s: float = 1.0,
    check: Callable[[], None] | None = None,
) -> float:
    """Block until every gold mart covers ``bronze_version``; returns the seconds waited.

    ``check`` is called on every poll and may raise to stop waiting early (e.g. when a process
    that gold depends on has died).

    Raises:
        GoldNotReadyError: when that does not happen within ``timeout_s`` seconds.
    """
    started = time.monotonic()
    while True:
        if check is not None:
            check()
        covered = covered_bronze_version(path)
        if covered is not None and covered >= bronze_version:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise GoldNotReadyError(
                f"gold covers bronze version {covered} after {timeout_s:.0f} s, expected {bronze_version}; "
                "see the Dagster runs and the logs under the data folder"
            )
        time.sleep(poll_s)


def active_users_summary(path: Path) -> list[AppSummary]:
    """One :class:`AppSummary` per (app, source), from the gold marts."""
    con = gold.connect(path, read_only=True)
    try:
        rows = con.execute(gold.load_sql("select_active_users_summary")).fetchall()
    finally:
        con.close()
    return [AppSummary(*row) for row in rows]


def format_summary(summaries: list[AppSummary]) -> str:
    """A plain-text table of the summaries, one line per (app, source)."""
    header = ("app", "source", "days", "last day", "DAU", "avg DAU", "MAU 30d", "MAU month")
    lines = [header] + [
        (
            s.app,
            s.source,
            str(s.days),
            s.last_day.isoformat(),
            str(s.dau_last_day),
            f"{s.avg_dau:.1f}",
            str(s.mau_rolling_30d),
            str(s.mau_calendar_month),
        )
        for s in summaries
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """CLI: optionally wait for gold to cover a bronze version, then print DAU/MAU per app.

    Reads the serving snapshot (and bronze's current version from the lake's log), never the
    warehouse. Exit status 0: printed; 1: no snapshot yet, or gold did not cover ``--bronze-version``
    within ``--timeout``; 2: a setting is invalid; 141: the reader closed stdout (``| head -1``,
    :mod:`pipelines.cli.closed_pipe`).
    """
    parser = argparse.ArgumentParser(
        prog="eventlake-status",
        description=__doc__.split("\n\n")[0],
        epilog="Columns: days = calendar days from the (app, source)'s first to its last day with events, idle "
        "days included (DAU 0); avg DAU = mean over those days; MAU 30d = people in the 30 days up to the last day; "
        "MAU month = people in that calendar month. Days are those of EVENTLAKE_REPORTING_TIMEZONE (default UTC).",
    )
    parser.add_argument("--bronze-version", type=int, help="wait until gold covers this bronze version")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait (default 900)")
    args = parser.parse_args(argv)
    settings = read_settings("eventlake-status")
    path = settings.serving_file
    if args.bronze_version is not None:
        try:
            wait_for_gold(path, args.bronze_version, args.timeout)
        except GoldNotReadyError as exc:
            sys.stderr.write(f"eventlake-status: {exc}\n")
            return 1
    if not path.exists():
        sys.stderr.write(f"eventlake-status: no serving snapshot at {path} yet\n")
        return 1
    covered = covered_bronze_version(path)
    latest = Lake(settings.lake_root, storage_options=settings.storage_options).version(RAW_EVENTS)
    sys.stdout.write(f"served gold covers bronze version {covered}; bronze is at version {latest}\n\n")
    sys.stdout.write(format_summary(active_users_summary(path)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
