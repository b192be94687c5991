"""What the loader refuses before a mart folder can touch a warehouse: names that collide with what the
refresh, the shared state or the Dagster definitions already use, and SQL that does more than its file
is for (a ``create.sql`` that drops or replaces a table would empty it on every connection).

Every check raises :class:`warehouse.marts.MartError` naming the mart and the fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from warehouse.marts import Mart


class MartError(ValueError):
    """A mart folder is malformed (names the folder and what is wrong)."""


#: Names a mart or its state may not take: the refresh's temporary views and tables, the gold state
#: every mart shares, and the other assets and serving tables of the code location.
RESERVED = frozenset(
    {
        *("people_events", "resolved_events", "previous_rows", "refresh_days", "silver_events", "changed_days"),
        *("changed_rows", "merged_days", "reporting_settings", "new_silver", "source_rows", "quality_days"),
        *("changed_event_days", "moved_first_visits", "gold_marts"),
        *("identity_links", "person_first_seen", "first_seen_moves", "anonymous_days", "gold_watermarks"),
        *("gold_recompute_days", "rescrub_count_changes", "recorded_days", "count_changes", "silver_count_changes"),
        *("first_seen_rechecks", "first_seen_rechecked"),
        *("events", "raw_events", "rejected_events", "user_attributes", "serving_snapshot", "purged_history"),
        "pipeline_freshness",
    }
)
_CREATE = re.compile(r"create table if not exists (\w+)\s*\(", re.IGNORECASE)
_ALTER = re.compile(r"alter table (\w+) add column if not exists ", re.IGNORECASE)
_VIEW = re.compile(r"create or replace view (\w+) as\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")
_TABLES = "select table_name from duckdb_tables() where schema_name = $schema"
_COLUMNS = "select column_name from duckdb_columns() where schema_name = $schema and table_name = $table"
#: Columns the refresh of each kind reads or writes in a mart's table besides its grain: incremental
#: refreshes rewrite whole (app, source, day)s and stamp ``silver_version`` (row-level lineage).
_REFRESHED_COLUMNS = {
    "incremental": frozenset({"app", "source", "day", "silver_version"}),
    "rebuild": frozenset(),
    "quality": frozenset({"app", "source", "day"}),
}


@cache
def _reserved_keywords() -> frozenset[str]:
    """DuckDB's reserved keywords: a table named ``select`` would break every statement formatting it in."""
    query = "select keyword_name from duckdb_keywords() where keyword_category = 'reserved'"
    rows = duckdb.connect().execute(query).fetchall()
    return frozenset(name for (name,) in rows)


def check_name(mart: Mart) -> None:
    """Refuse a mart or state name that is reserved or a DuckDB keyword.

    Raises:
        MartError: the name and why.
    """
    for table in mart.tables:
        if table in RESERVED or table in _reserved_keywords() or table.endswith("_keyed"):
            raise MartError(f"mart {mart.name}: the name {table!r} is reserved (the refresh or the definitions use it)")


def check_names(marts: Mapping[str, Mart]) -> None:
    """Refuse two marts (or their state tables) of one name.

    Raises:
        MartError: the first collision found.
    """
    owners: dict[str, str] = {}
    for mart in marts.values():
        for table in mart.tables:
            if table in owners:
                raise MartError(f"mart {mart.name}: table {table!r} belongs to mart {owners[table]} already")
            owners[table] = mart.name


def _statements(mart: Mart, file: str) -> list[str]:
    """The statements of ``<folder>/<file>``, comments removed, split by DuckDB's parser."""
    try:
        statements = duckdb.extract_statements(mart.folder.joinpath(file).read_text())
    except duckdb.Error as error:
        raise MartError(f"mart {mart.name}: {file} does not parse: {error}") from error
    return [_COMMENT.sub("", statement.query).strip() for statement in statements]


def check_sql(mart: Mart, scratch: duckdb.DuckDBPyConnection) -> None:
    """Refuse a ``create.sql`` that does more than create the mart's own tables and add their columns,
    a ``views.sql`` that does more than create views, a shared insert model that does not exist and an
    ``expectations.json`` that is not a suite; ``create.sql`` must also run on an empty database and
    create exactly the mart's tables. ``scratch``: an in-memory connection shared by every mart of one
    load (each mart's tables go to a schema of its name; a connection per mart cost ~20 ms each).

    Raises:
        MartError: what is wrong, in which file.
    """
    for statement in _statements(mart, "create.sql"):
        match = _CREATE.match(statement) or _ALTER.match(statement)
        if match is None or match.group(1) not in mart.tables:
            raise MartError(
                f"mart {mart.name}: create.sql may only 'create table if not exists' or 'alter table … add column "
                f"if not exists' its own tables {list(mart.tables)}: {statement[:80]!r}"
            )
    try:
        scratch.execute(f'create schema "{mart.name}"')
        scratch.execute(f'use "{mart.name}"')
        scratch.execute(mart.sql("create"))
        created = {name for (name,) in scratch.execute(_TABLES, {"schema": mart.name}).fetchall()}
        columns = {name for (name,) in scratch.execute(_COLUMNS, {"schema": mart.name, "table": mart.name}).fetchall()}
    except duckdb.Error as error:
        raise MartError(f"mart {mart.name}: create.sql fails on an empty database: {error}") from error
    if created != set(mart.tables):
        raise MartError(f"mart {mart.name}: create.sql creates {sorted(created)}, not {sorted(mart.tables)}")
    missing = sorted((set(mart.spec.grain) | _REFRESHED_COLUMNS[mart.spec.kind]) - columns)
    if missing:
        raise MartError(
            f"mart {mart.name}: its table lacks the columns {missing} (its grain and what its refresh writes)"
        )
    if mart.has("views.sql"):
        for statement in _statements(mart, "views.sql"):
            if not _VIEW.match(statement):
                raise MartError(f"mart {mart.name}: views.sql may only 'create or replace view': {statement[:80]!r}")
    model = mart.spec.insert
    if model and not files("warehouse").joinpath("sql", f"insert_{model.model}.sql").is_file():
        raise MartError(f"mart {mart.name}: no shared insert model warehouse/sql/insert_{model.model}.sql")
    _check_suite(mart)


def _check_suite(mart: Mart) -> None:
    try:
        suite = json.loads(mart.folder.joinpath("expectations.json").read_text())
        if not all(expectation["meta"]["check"] for expectation in suite["expectations"]):
            raise ValueError("an expectation has an empty meta.check")
    except (ValueError, KeyError, TypeError) as error:
        raise MartError(
            f"mart {mart.name}: expectations.json is not a suite whose every expectation has a meta.check "
            f"({type(error).__name__}: {error})"
        ) from error
