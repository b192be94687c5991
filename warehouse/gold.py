"""The gold warehouse: the DuckDB file, its marts and the SQL that defines them.

SQL lives in ``warehouse/sql/*.sql`` and takes bound parameters (``$name``); the only
identifiers formatted in are mart table names from :data:`MARTS`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from warehouse.funnels import DEFAULT_FUNNELS_PATH, definition_tables, fingerprint, load_funnels
from warehouse.lake import Lake
from warehouse.settings import get_settings
from warehouse.tables import (
    ACTIVE_PERSON_DAYS,
    ACTIVE_PERSON_WEEKS,
    ACTIVE_USERS_BREAKDOWN,
    COMPONENT_INTERACTIONS,
    DAILY_ACTIVE_USERS,
    DAILY_EVENT_COUNTS,
    DAILY_PAGE_VIEWS,
    DAILY_SESSIONS,
    ERROR_SUMMARY,
    FORM_PROGRESS,
    FUNNEL_STEPS,
    MONTHLY_ACTIVE_USERS,
    PERSON_LAST_ACTIVE,
    SESSIONS,
    USER_ATTRIBUTES,
    WEEKLY_ACTIVE_USERS,
)

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "sql"


@dataclass(frozen=True)
class MartInputs:
    """What a mart's SQL needs beyond silver, read when it refreshes.

    ``tables``: Arrow tables registered under their names (e.g. funnel definitions);
    ``lookback_days``: a changed day D also refreshes D - lookback_days .. D (their values read
    events up to that many days later, so the scan reaches as far past the last refreshed day);
    ``definition``: a fingerprint of the definitions, kept with the
    watermark — when it changes, the mart's whole history is recomputed;
    ``params``: extra bound parameters of its insert SQL (e.g. the session timeout).
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    lookback_days: int = 0
    definition: str = ""
    params: dict[str, object] = field(default_factory=dict)


def no_inputs(lake: Lake) -> MartInputs:
    """A mart that reads silver only."""
    return MartInputs()


@dataclass(frozen=True)
class Mart:
    """An incrementally refreshed gold mart keyed by (app, source, day, …).

    ``window_days``: a changed day D refreshes D .. D + window_days - 1 (the days whose
    trailing window contains D). ``whole_month`` / ``whole_week``: a changed day also refreshes
    its calendar month / ISO week. ``fill_spine``: the mart has a row for every day between an
    (app, source)'s first and last event day. ``inputs``: what else its SQL reads, from the lake
    it refreshes from (:class:`MartInputs`). ``served``: copied into the serving snapshot; false
    for state other marts read (person-level rows, one row per session). ``reads``: other assets
    its SQL reads (gold marts, the silver user attributes), materialized before it.
    ``first_seen``: its rows depend on when people were first active (``person_first_seen``), so the
    days a first visit moved away from are rewritten too. ``keeps_rows``: its SQL reads
    ``previous_rows`` (its own rows of the refreshed days before the refresh) to keep the values
    a changed day cannot move (WAU/MAU's rolling counts of days refreshed only for their calendar
    week or month). ``state``: a gold state table kept with the mart's rows — ``maintain_<state>.sql``
    runs after each batch's insert, in the same transaction, and a full rebuild empties it first.
    ``reads_events``: its SQL reads silver's events (``people_events``); false for marts computed
    from other gold tables only, which then open none of silver's files. ``counts_from_state``:
    its people counts over windows ending on or after the last day anyone was active come from
    ``person_last_active`` (refresh_days gains ``from_state`` and ``reads_window``, see
    ``select_state_days.sql``), so only the other days' windows are read as person-days.
    ``partial_days``: a refresh day whose own events did not change (the day before or after a
    changed one) keeps the rows a change next door cannot reach: refresh_days gains ``changed``,
    ``before_changed`` and ``after_changed`` (``select_partial_days.sql``) and the mart's own
    ``delete_sql`` (run with its inputs' params) removes only the rows its insert SQL writes back.
    """

    table: str
    insert_sql: str
    window_days: int = 1
    whole_month: bool = False
    whole_week: bool = False
    fill_spine: bool = False
    inputs: Callable[[Lake], MartInputs] = no_inputs
    served: bool = True
    reads: tuple[str, ...] = ()
    first_seen: bool = False
    keeps_rows: bool = False
    state: str | None = None
    reads_events: bool = True
    counts_from_state: bool = False
    partial_days: bool = False
    delete_sql: str = "delete_refresh_days"


def user_attribute_inputs(lake: Lake) -> MartInputs:
    """The user attributes (silver ``user_attributes``, loaded from ``EVENTLAKE_USERS_PATH``) as the
    ``user_attributes`` table; their content's SHA-256 is the definition, so an edited users source
    recomputes the mart (which version was valid when can change for any past day)."""
    names = [name for name in USER_ATTRIBUTES.schema.names if name != "run_id"]
    order = [(name, "ascending") for name in names]
    schema = pa.schema([USER_ATTRIBUTES.schema.field(name) for name in names])
    table = lake.dataset(USER_ATTRIBUTES).to_table(columns=names).cast(schema).sort_by(order)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return MartInputs(
        tables={"user_attributes": table},
        definition=f"user_attributes_sha256={hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()}",
    )


def new_people_inputs(lake: Lake) -> MartInputs:
    """Daily active users with new vs returning people: a definition of its own, so a warehouse built
    before the split recomputes DAU once (its rows had no new/returning counts)."""
    return MartInputs(definition="new_people=person_first_seen")


def person_day_inputs(lake: Lake) -> MartInputs:
    """Active person-days, kept with ``person_last_active``: a definition of its own, so a warehouse built
    before that state existed rebuilds both once (the state is derived from every person-day)."""
    return MartInputs(definition="state=person_last_active")


def calendar_week_inputs(lake: Lake) -> MartInputs:
    """Weekly active users: a changed day also refreshes the 6 days before it, so with the 7-day
    window every day of its ISO week (whose calendar-week count it changes) is rewritten."""
    return MartInputs(lookback_days=6)


def funnel_inputs(lake: Lake) -> MartInputs:
    """The funnel definitions (``EVENTLAKE_FUNNELS_PATH``, default ``warehouse/funnels.yaml``).

    Raises:
        OSError, ValueError: the funnels file cannot be read or is malformed.
    """
    funnels = load_funnels(get_settings().funnels_path or DEFAULT_FUNNELS_PATH)
    return MartInputs(
        tables=definition_tables(funnels),
        lookback_days=funnels.lookback_days,
        definition=fingerprint(funnels),
    )


def session_inputs(lake: Lake) -> MartInputs:
    """Sessions: the inactivity timeout (``EVENTLAKE_SESSION_TIMEOUT_MINUTES``) as ``$timeout_s``;
    a changed day also refreshes the day before (a session crossing midnight), and a new timeout
    recomputes every session."""
    timeout_s = get_settings().session_timeout_minutes * 60
    return MartInputs(lookback_days=1, definition=f"session_timeout_s={timeout_s}", params={"timeout_s": timeout_s})


def daily_session_inputs(lake: Lake) -> MartInputs:
    """Daily sessions: the same days and definition as :func:`session_inputs`, read from ``sessions``."""
    return replace(session_inputs(lake), params={})


#: Person- and session-level state, the largest tables: no primary key. A key's index grows with
#: history and so does the cost of every insert and checkpoint (measured: 100k rows into a 10M-row
#: keyed table 2.2x slower than into a 1M-row one; flat without the key). Their rows are unique by
#: construction (a refresh replaces whole days, the grain holds the day) and each refresh checks the
#: days it wrote (the suites' grain_unique). Warehouses that still have the key are migrated on connect.
UNKEYED_TABLES = [SESSIONS, ACTIVE_PERSON_DAYS, ACTIVE_PERSON_WEEKS]

MARTS: dict[str, Mart] = {
    ACTIVE_PERSON_DAYS: Mart(
        ACTIVE_PERSON_DAYS,
        "insert_active_person_days",
        served=False,
        inputs=person_day_inputs,
        state=PERSON_LAST_ACTIVE,
    ),
    DAILY_ACTIVE_USERS: Mart(
        DAILY_ACTIVE_USERS,
        "insert_daily_active_users",
        fill_spine=True,
        inputs=new_people_inputs,
        reads=(ACTIVE_PERSON_DAYS,),
        first_seen=True,
        reads_events=False,
    ),
    WEEKLY_ACTIVE_USERS: Mart(
        WEEKLY_ACTIVE_USERS,
        "insert_weekly_active_users",
        window_days=7,
        fill_spine=True,
        inputs=calendar_week_inputs,
        reads=(ACTIVE_PERSON_DAYS,),
        keeps_rows=True,
        counts_from_state=True,
        reads_events=False,
    ),
    MONTHLY_ACTIVE_USERS: Mart(
        MONTHLY_ACTIVE_USERS,
        "insert_monthly_active_users",
        window_days=30,
        whole_month=True,
        fill_spine=True,
        reads=(ACTIVE_PERSON_DAYS,),
        keeps_rows=True,
        counts_from_state=True,
        reads_events=False,
    ),
    DAILY_EVENT_COUNTS: Mart(DAILY_EVENT_COUNTS, "insert_daily_event_counts"),
    DAILY_PAGE_VIEWS: Mart(DAILY_PAGE_VIEWS, "insert_daily_page_views"),
    FUNNEL_STEPS: Mart(FUNNEL_STEPS, "insert_funnel_steps", whole_week=True, inputs=funnel_inputs),
    FORM_PROGRESS: Mart(FORM_PROGRESS, "insert_form_progress"),
    COMPONENT_INTERACTIONS: Mart(COMPONENT_INTERACTIONS, "insert_component_interactions"),
    ERROR_SUMMARY: Mart(ERROR_SUMMARY, "insert_error_summary"),
    SESSIONS: Mart(
        SESSIONS,
        "insert_sessions",
        window_days=2,
        inputs=session_inputs,
        served=False,
        partial_days=True,
        delete_sql="delete_session_rows",
    ),
    DAILY_SESSIONS: Mart(
        DAILY_SESSIONS,
        "insert_daily_sessions",
        window_days=2,
        inputs=daily_session_inputs,
        reads=(SESSIONS,),
        reads_events=False,
    ),
    ACTIVE_PERSON_WEEKS: Mart(
        ACTIVE_PERSON_WEEKS,
        "insert_active_person_weeks",
        whole_week=True,
        served=False,
        reads=(ACTIVE_PERSON_DAYS,),
        counts_from_state=True,
        reads_events=False,
    ),
    ACTIVE_USERS_BREAKDOWN: Mart(
        ACTIVE_USERS_BREAKDOWN,
        "insert_active_users_breakdown",
        inputs=user_attribute_inputs,
        reads=(USER_ATTRIBUTES.name,),
    ),
}


@cache
def load_sql(name: str, gold_table: str | None = None) -> str:
    """The text of ``sql/<name>.sql``, with ``{gold_table}`` filled from the whitelist: the marts and
    the state they keep (``Mart.state``).

    Raises:
        KeyError: when ``gold_table`` is neither a known mart nor a mart's state.
        FileNotFoundError: when there is no such SQL file.
    """
    text = (SQL_DIR / f"{name}.sql").read_text()
    if gold_table is not None:
        tables = {mart.table for mart in MARTS.values()} | {mart.state for mart in MARTS.values() if mart.state}
        if gold_table not in tables:
            raise KeyError(gold_table)
        text = text.replace("{gold_table}", gold_table)
    return text


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
def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; waits up to 60 s while another process holds its lock.

    Memory is capped by ``EVENTLAKE_WAREHOUSE_MEMORY_LIMIT`` (a first build over a long history
    spills to disk instead of exhausting the machine).

    Raises:
        duckdb.IOException: when the file stays locked for 60 s, or at once when it cannot be opened.
        duckdb.InvalidInputException: the memory limit setting is not a DuckDB size.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": get_settings().warehouse_memory_limit})
    if not read_only:
        con.begin()
        try:
            keyed = [
                name for (name,) in con.execute(load_sql("select_keyed_tables"), {"tables": UNKEYED_TABLES}).fetchall()
            ]
            for table in keyed:
                con.execute(load_sql("rename_keyed_table", table))
            con.execute(load_sql("create_gold_tables"))
            for table in keyed:
                con.execute(load_sql("copy_keyed_table", table))
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return con


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
