"""The gold marts: one folder each, and the loader that reads them.

A mart is a folder ``<name>/`` (the name is the table's and the Dagster asset's) holding:

- ``mart.yaml``: its definition as data (:class:`MartSpec`): description, grain, kind of refresh
  and its incremental behaviour, what else it reads, whether it is served;
- ``create.sql``: its table (and the state it keeps), idempotent DDL (``create table if not exists``,
  ``alter table … add column if not exists`` for older warehouse files);
- ``insert.sql``: what a refresh writes (unless ``insert.model`` names a shared model in
  ``warehouse/sql``, e.g. the active-users window shared by WAU and MAU);
- ``expectations.json``: its Great Expectations suite of invariants (one Dagster asset check);
- optional: ``views.sql`` (serving views over it, created in the serving snapshot), ``delete.sql``
  (``refresh.partial_days``: what a partial day loses), ``maintain.sql`` (its ``state``),
  ``macros.sql`` (DuckDB temp macros its other SQL shares, created before each refresh batch),
  ``append.sql`` and ``select_appendable.sql`` (a micro-batch's inserted rows added to its rows,
  :class:`Refresh`),
  ``select_days.sql``, ``select_received.sql`` and ``select_bronze_counts.sql`` (``kind: quality``).

The marts shipped with eventlake are package data of this package; a deployment may add its own
folders in one more directory (``EVENTLAKE_EXTRA_MARTS_DIR``). Nothing else lists mart names: the
Dagster assets and checks, the warehouse tables, the SQL whitelist and the serving snapshot all
come from :func:`load_marts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from warehouse.marts.checks import MartError, check_name, check_names, check_sql

#: A folder name, a state table or a column formatted into SQL: lowercase SQL identifiers only.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Refresh(BaseModel):
    """How a changed day spreads to the days a mart rewrites (see ``select_refresh_days.sql``).

    ``window_days``: a changed day D refreshes D .. D + window_days - 1 (the days whose trailing
    window contains D). ``lookback_days``: D also refreshes D - lookback_days .. D (their values read
    events up to that many days later). ``calendar``: a changed day also refreshes its whole ISO
    ``week`` or calendar ``month``. ``fill_spine``: a row for every day between an (app, source)'s first
    and last event day. ``first_seen``: its rows depend on when people were first active, so the days
    a first visit moved away from are rewritten too. ``keeps_rows``: its SQL reads ``previous_rows``
    (its rows of the refreshed days before the refresh) to keep values a changed day cannot move.
    ``counts_from_state``: people counts over windows ending on or after the last day anyone was active
    come from ``person_last_active`` (``select_state_days.sql``). ``partial_days``: a refresh day whose own
    events did not change keeps the rows a change next door cannot reach (``select_partial_days.sql``;
    the folder's ``delete.sql`` removes only what ``insert.sql`` writes back). ``reads_events``: its SQL
    reads silver's events (``people_events``); false for marts computed from gold tables only.
    ``event_types``: the only event types its values depend on (e.g. ``[page_view]``): a micro-batch
    without new rows of these types leaves it as it is (skipped); unset, every event counts.
    ``definition``: a fingerprint kept with the watermark — changing it recomputes the mart's history.

    A folder's optional ``append.sql`` takes the days whose only change is inserted silver rows (no
    delete, merge or moved first visit): it adds the micro-batch's rows to the mart's rows (counts
    added, people counted once through a state of who was counted) instead of recomputing those
    days from all their events, so a refresh costs what the micro-batch holds, not what the day does
    (:attr:`appends`: marts whose changed day refreshes that day alone; a mart whose changed day
    reaches other days, sessions, also has a ``select_appendable.sql`` giving the days it can add to).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(default=1, ge=1, le=366)
    lookback_days: int = Field(default=0, ge=0, le=366)
    calendar: Literal["week", "month"] | None = None
    fill_spine: bool = False
    first_seen: bool = False
    keeps_rows: bool = False
    counts_from_state: bool = False
    partial_days: bool = False
    reads_events: bool = True
    event_types: tuple[str, ...] | None = Field(default=None, min_length=1)
    definition: str = ""

    @property
    def appends(self) -> bool:
        """Whether a changed day refreshes only itself from its own events: what ``append.sql`` needs."""
        return (
            self.window_days == 1
            and self.lookback_days == 0
            and self.calendar is None
            and self.reads_events
            and not (self.fill_spine or self.first_seen or self.keeps_rows)
            and not (self.counts_from_state or self.partial_days)
        )


class InsertModel(BaseModel):
    """A shared insert model (``warehouse/sql/insert_<model>.sql``) with this mart's values.

    ``params``: bound parameters (``$name``); ``columns``: column names it formats in
    (``{placeholder}`` → identifier), e.g. WAU's ``wau_rolling_7d``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=IDENTIFIER.pattern)
    params: dict[str, str | int] = Field(default_factory=dict)
    columns: dict[str, str] = Field(default_factory=dict)


class MartSpec(BaseModel):
    """The content of a mart's ``mart.yaml``.

    ``kind``: ``incremental`` (rewrites the days silver's change feed touched), ``rebuild`` (its
    ``insert.sql`` replaces the table from other gold tables) or ``quality`` (``data_quality_daily``:
    incremental by received day over bronze, silver and the quarantine). ``grain``: the columns one row
    is unique by (the primary key unless ``keyed`` is false: person- and session-level tables, whose
    key index would grow with history). ``served``: copied into the serving snapshot. ``reads``: other
    gold marts (or ``user_attributes``) its SQL reads, materialized before it. ``inputs``: a named
    input provider (:data:`pipelines.mart_inputs.PROVIDERS`). ``state``: a state table kept with its rows by
    ``maintain.sql`` in the same transaction.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    grain: tuple[str, ...] = Field(min_length=1)
    kind: Literal["incremental", "rebuild", "quality"] = "incremental"
    keyed: bool = True
    served: bool = True
    reads: tuple[str, ...] = ()
    inputs: Literal["funnels", "sessions", "session_days", "user_attributes"] | None = None
    state: str | None = Field(default=None, pattern=IDENTIFIER.pattern)
    refresh: Refresh = Refresh()
    insert: InsertModel | None = None

    @model_validator(mode="after")
    def _identifiers(self) -> MartSpec:
        for name in (*self.grain, *(self.insert.columns.values() if self.insert else ())):
            if not IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not a lowercase SQL identifier")
        if self.kind == "rebuild" and not self.reads:
            raise ValueError("a rebuild mart reads at least one mart (reads: [...]): its watermark follows the first")
        return self


class Mart(BaseModel):
    """A loaded mart: its name (the folder's), folder and definition."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    folder: Traversable
    spec: MartSpec

    @property
    def tables(self) -> tuple[str, ...]:
        """The warehouse tables it owns: its own and its state's."""
        return (self.name, self.spec.state) if self.spec.state else (self.name,)

    def has(self, file: str) -> bool:
        """Whether its folder holds ``file`` (e.g. ``views.sql``)."""
        return self.folder.joinpath(file).is_file()

    def sql(self, file: str) -> str:
        """The text of ``<folder>/<file>.sql``.

        Raises:
            FileNotFoundError: the folder has no such file.
        """
        return self.folder.joinpath(f"{file}.sql").read_text()


def _load_mart(folder: Traversable, scratch: duckdb.DuckDBPyConnection) -> Mart:
    """Read one mart folder (``scratch``: see :func:`~warehouse.marts.checks.check_sql`).

    Raises:
        MartError: bad folder name, unreadable or invalid ``mart.yaml``, or a required file missing.
    """
    name = folder.name
    if not IDENTIFIER.fullmatch(name):
        raise MartError(f"mart folder {name!r}: the name must be a lowercase SQL identifier")
    try:
        spec = MartSpec.model_validate(yaml.safe_load(folder.joinpath("mart.yaml").read_text()))
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as error:
        raise MartError(f"mart {name}: mart.yaml is invalid: {error}") from error
    mart = Mart(name=name, folder=folder, spec=spec)
    required = ["create.sql", "expectations.json"]
    required += [] if spec.insert else ["insert.sql"]
    required += ["delete.sql"] if spec.refresh.partial_days or spec.kind == "quality" else []
    required += ["maintain.sql"] if spec.state else []
    required += ["select_days.sql"] if spec.kind == "quality" else []
    missing = [file for file in required if not mart.has(file)]
    if missing:
        raise MartError(f"mart {name}: missing {', '.join(missing)} in its folder")
    if mart.has("append.sql") and not (spec.refresh.appends or mart.has("select_appendable.sql")):
        raise MartError(
            f"mart {name}: append.sql adds a micro-batch to the changed days' rows only, but a changed "
            "day also refreshes other days or reads rows it cannot add to (window_days, lookback_days, "
            "calendar, fill_spine, first_seen, keeps_rows, counts_from_state, partial_days, reads_events): "
            "a select_appendable.sql must say which days it can add to"
        )
    check_name(mart)
    check_sql(mart, scratch)
    return mart


def _ordered(marts: dict[str, Mart]) -> dict[str, Mart]:
    """``marts`` with every mart after those it reads (a stable topological order by name).

    Raises:
        MartError: a mart reads a mart that does not exist, or marts read each other in a cycle.
    """
    ordered: dict[str, Mart] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise MartError(f"marts read each other in a cycle through {name}")
        visiting.add(name)
        for upstream in marts[name].spec.reads:
            if upstream in marts:
                visit(upstream)
            elif upstream != "user_attributes":
                raise MartError(f"mart {name} reads {upstream!r}, which is neither a mart nor user_attributes")
        visiting.discard(name)
        ordered[name] = marts[name]

    for name in sorted(marts):
        visit(name)
    return ordered


def load_marts(folders: Iterable[Traversable]) -> dict[str, Mart]:
    """Every mart folder (a subfolder with a ``mart.yaml``) under ``folders``, by name, each after the
    marts it reads.

    Raises:
        MartError: a folder is malformed, two folders share a name, or ``reads`` names no mart.
    """
    marts: dict[str, Mart] = {}
    with duckdb.connect() as scratch:
        for root in folders:
            for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
                if not folder.is_dir() or not folder.joinpath("mart.yaml").is_file():
                    continue
                if folder.name in marts:
                    raise MartError(f"mart {folder.name} is defined twice: in {marts[folder.name].folder} and {folder}")
                marts[folder.name] = _load_mart(folder, scratch)
    check_names(marts)
    return _ordered(marts)


def packaged_marts_dir() -> Traversable:
    """The folder of the marts shipped with eventlake (package data, read with importlib.resources)."""
    return files(__name__)


@cache
def catalog(extra_dir: Path | None = None) -> dict[str, Mart]:
    """The shipped marts plus those under ``extra_dir`` (``EVENTLAKE_EXTRA_MARTS_DIR``), loaded once
    per process and directory (:func:`load_marts`).

    Raises:
        MartError: see :func:`load_marts`; or ``extra_dir`` is not a directory.
    """
    if extra_dir is not None and not extra_dir.is_dir():
        raise MartError(f"EVENTLAKE_EXTRA_MARTS_DIR {extra_dir} is not a directory")
    return load_marts([packaged_marts_dir(), *([extra_dir] if extra_dir else [])])
