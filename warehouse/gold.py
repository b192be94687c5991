"""The gold warehouse: the DuckDB file, its tables, watermarks and SQL plumbing.

Marts are defined by their folders (:mod:`warehouse.marts`); SQL shared by every mart lives in
``warehouse/sql/*.sql``. SQL takes bound parameters (``$name``); the only identifiers formatted in are
mart, state and column names read from the mart folders, checked against :data:`warehouse.marts.IDENTIFIER`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from warehouse.marts import IDENTIFIER, Mart, catalog

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class GoldOptions:
    """How gold is computed: the settings of the gold refreshes (defaults: :class:`warehouse.settings.Settings`'s).

    ``reporting_timezone``: IANA zone whose calendar days the marts count in; ``batch_weeks``: ISO
    weeks rewritten per transaction; ``session_timeout_minutes``: inactivity that ends a session;
    ``funnels_path``: funnel definitions (None: ``warehouse/funnels.yaml``); ``validation_part_rows``:
    most rows per part when a mart's invariants are checked; ``extra_marts_dir``: a folder of more mart
    folders besides the shipped ones.
    """

    reporting_timezone: str = "UTC"
    batch_weeks: int = 4
    session_timeout_minutes: int = 30
    funnels_path: Path | None = None
    validation_part_rows: int = 500_000
    extra_marts_dir: Path | None = None

    @property
    def marts(self) -> dict[str, Mart]:
        """The marts these options build (:func:`warehouse.marts.catalog`)."""
        return catalog(self.extra_marts_dir)


@cache
def _shared_sql(name: str) -> str:
    return files("warehouse").joinpath("sql", f"{name}.sql").read_text()


def load_sql(name: str, gold_table: str | None = None, **identifiers: str) -> str:
    """The text of ``warehouse/sql/<name>.sql``, with ``{gold_table}`` and ``{<identifier>}`` filled in.

    Raises:
        ValueError: ``gold_table`` or an identifier is not a lowercase SQL identifier.
        FileNotFoundError: when there is no such SQL file.
    """
    text = _shared_sql(name)
    for placeholder, value in {"gold_table": gold_table, **identifiers}.items():
        if value is None:
            continue
        if not IDENTIFIER.fullmatch(value):
            raise ValueError(f"{value!r} is not a lowercase SQL identifier")
        text = text.replace(f"{{{placeholder}}}", value)
    return text


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """``begin``; ``commit`` when the block ends, ``rollback`` (and re-raise) when it raises."""
    con.begin()
    try:
        yield
        con.commit()
    except BaseException:
        con.rollback()
        raise


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, views: Mapping[str, object]) -> Iterator[None]:
    """Register ``views`` (name → Arrow table, dataset or reader) on ``con`` for the block, then unregister them."""
    for name, view in views.items():
        con.register(name, view)
    try:
        yield
    except BaseException:
        # In an aborted transaction even an unregister fails: the block's own error is what matters.
        with suppress(duckdb.TransactionException):
            for name in views:
                con.unregister(name)
        raise
    for name in views:
        con.unregister(name)


def _locked(error: BaseException) -> bool:
    """Whether ``error`` is DuckDB's lock conflict (``Could not set lock on file …``), not another I/O error."""
    return isinstance(error, duckdb.IOException) and "Could not set lock" in str(error)


@retry(
    # DuckDB allows one writer process per file: wait out a concurrent writer/reader. Any other I/O
    # error (not a DuckDB file, a directory, no permission) fails at once.
    retry=retry_if_exception(_locked),
    stop=stop_after_delay(60),
    wait=wait_random(0.05, 0.5),
    reraise=True,
)
def connect(
    path: Path, read_only: bool = False, memory_limit: str | None = None, marts: Mapping[str, Mart] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; waits up to 60 s while another process holds its lock.

    Opened for writing, the shared gold state and every mart's table (``create.sql`` of ``marts``,
    default the shipped ones) are created if missing, and tables a mart declares unkeyed lose the
    primary key older files gave them. ``memory_limit``: DuckDB's ``memory_limit`` (e.g. ``'40%'``,
    ``'4GB'``; None: DuckDB's default), so a first build over a long history spills to disk.

    Raises:
        duckdb.IOException: when the file stays locked for 60 s, or at once when it cannot be opened.
        duckdb.InvalidInputException: the memory limit is not a DuckDB size.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": memory_limit} if memory_limit else {}
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    if not read_only:
        try:
            _create_tables(con, catalog() if marts is None else marts)
        except BaseException:
            con.close()  # else the write lock stays held while the error is referenced
            raise
    return con


def erasures_pending(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether some mart has days of an erasure or a rescrub (``gold_recompute_days``) still to
    recompute: the gold step then rewrites the file, whose free blocks may hold the values removed."""
    return bool(con.execute(load_sql("select_erasures_pending")).fetchall()[0][0])


def rewrite_file(path: Path) -> None:
    """Copy the warehouse file into a new one and put it in its place (atomic rename), with no
    connection open to it: a deleted row's bytes stay in the file's free blocks until reused, and an
    erasure (:mod:`pipelines.erasure`) must leave none. The copy has the same tables, keys and rows
    (DuckDB's ``COPY FROM DATABASE``). A crash leaves the old file in place (and a leftover copy,
    replaced next time).

    Raises:
        duckdb.IOException: the file is locked by another process, or the disk is full (nothing replaced).
    """
    copy = path.with_name(path.name + ".rewrite")
    copy.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        # ATTACH takes no bound parameters: the paths are quoted here.
        con.execute(f"attach {_quoted(str(path))} as source (read_only)")
        con.execute(f"attach {_quoted(str(copy))} as target")
        con.execute(load_sql("copy_database"))
        con.execute("detach target")
        con.execute("detach source")
    finally:
        con.close()
    os.replace(copy, path)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_tables(con: duckdb.DuckDBPyConnection, marts: Mapping[str, Mart]) -> None:
    #: Person- and session-level tables have no primary key: a key's index grows with history and so
    #: does the cost of every insert and checkpoint (measured: 100k rows into a 10M-row keyed table 2.2x
    #: slower than into a 1M-row one; flat without the key). Their rows are unique by construction.
    unkeyed = [name for name, mart in marts.items() if not mart.spec.keyed]
    with transaction(con):
        keyed = [name for (name,) in con.execute(load_sql("select_keyed_tables"), {"tables": unkeyed}).fetchall()]
        for table in keyed:
            con.execute(load_sql("rename_keyed_table", table))
        con.execute(load_sql("create_gold_state"))
        for mart in marts.values():
            con.execute(mart.sql("create"))
        for table in keyed:
            con.execute(load_sql("copy_keyed_table", table))


@dataclass(frozen=True)
class GoldWatermark:
    """How far a mart has consumed silver, and the bronze version that silver covered.

    ``quarantine_version``: the quarantine table's version read (``data_quality_daily`` only).
    """

    silver_version: int
    bronze_version: int
    definition: str = ""
    quarantine_version: int | None = None


def gold_watermark(con: duckdb.DuckDBPyConnection, mart: str) -> GoldWatermark | None:
    """The mart's watermark, or ``None`` when it has never run."""
    # fetchall: a result left unfinished would block the caller's next statement on this connection
    rows = con.execute(load_sql("select_gold_watermark"), {"mart": mart}).fetchall()
    if not rows:
        return None
    silver_version, bronze_version, definition, quarantine_version = rows[0]
    return GoldWatermark(
        int(silver_version),
        int(bronze_version),
        definition or "",
        None if quarantine_version is None else int(quarantine_version),
    )


def _read_served(path: Path, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T | None:
    """``read`` on the serving snapshot at ``path``, opened read-only (never waiting for the
    warehouse's write lock); ``None`` before the first snapshot or when the file is not a snapshot
    this code can read (a micro-batch publishes a new one)."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return read(con)
        finally:
            con.close()
    except duckdb.Error:
        return None


def served_watermarks(path: Path, marts: Iterable[str]) -> dict[str, GoldWatermark] | None:
    """The watermarks of ``marts`` in the serving snapshot at ``path`` (what the dashboards show), by
    mart (a mart that never ran is missing); ``None`` as :func:`_read_served`."""
    marks = _read_served(path, lambda con: {mart: gold_watermark(con, mart) for mart in marts})
    return None if marks is None else {mart: mark for mart, mark in marks.items() if mark is not None}


def served_consumer_floor(path: Path) -> tuple[int | None, int | None, int | None] | None:
    """``(silver, bronze, quarantine)``: the lowest version of each that any mart or shared state of
    the serving snapshot at ``path`` has consumed (``None`` where no watermark has one); ``None`` as
    :func:`_read_served`."""
    row = _read_served(path, lambda con: con.execute(load_sql("select_consumer_floor")).fetchone())
    return None if row is None else (row[0], row[1], row[2])


def consumers_behind(
    con: duckdb.DuckDBPyConnection, silver_version: int, quarantine_version: int
) -> list[tuple[str, int, int | None]]:
    """``(mart, silver_version, quarantine_version)`` of every mart or shared state whose watermark
    is before these versions of silver or the quarantine (a mart that never ran reads the tables
    whole and is not one)."""
    params = {"silver_version": silver_version, "quarantine_version": quarantine_version}
    return [
        (mart, int(s), None if q is None else int(q))
        for mart, s, q in con.execute(load_sql("select_consumers_behind"), params).fetchall()
    ]


def set_gold_watermark(con: duckdb.DuckDBPyConnection, mart: str, watermark: GoldWatermark) -> None:
    """Record how far ``mart`` (a mart, or shared state such as identity links) has consumed silver.

    Call it inside the transaction that wrote what the watermark covers.
    """
    con.execute(
        load_sql("upsert_gold_watermark"),
        {
            "mart": mart,
            "silver_version": watermark.silver_version,
            "bronze_version": watermark.bronze_version,
            "definition": watermark.definition,
            "quarantine_version": watermark.quarantine_version,
        },
    )
