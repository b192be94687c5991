"""``eventlake-query``: SQL over the lake, for analysts and engineers. Tables: ``events`` (silver, its
hot and cold tiers as one table, each event once), ``raw_events`` (bronze) and ``rejected_events``
(the quarantine), read through Arrow into an in-memory DuckDB database (nothing is written).

Example: ``eventlake-query "select event_date, count(*) from events group by 1 order by 1"``."""

from __future__ import annotations

import argparse
import sys

import duckdb
import polars as pl
import pyarrow.csv as pacsv

from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS
from warehouse.settings import read_settings

#: The tables a query can name, by name.
QUERYABLE = (EVENTS, RAW_EVENTS, REJECTED_EVENTS)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """``eventlake-query SQL [--csv] [--rows N]``: print the query's result as a table (at most ``N``
    rows shown, default 50) or as CSV (every row). Exit status 2 with DuckDB's message when the SQL
    fails (unknown table or column, syntax)."""
    parser = argparse.ArgumentParser(prog="eventlake-query", description=__doc__.split("\n\n")[0])
    parser.add_argument("sql", help="a DuckDB SQL query over events, raw_events and rejected_events")
    parser.add_argument("--csv", action="store_true", help="print every row as CSV (default: a table)")
    parser.add_argument("--rows", type=int, default=50, help="rows a table shows (default 50)")
    args = parser.parse_args(argv)
    lake = read_settings("eventlake-query").lake()
    con = duckdb.connect()
    for table in QUERYABLE:
        con.register(table.name, lake.dataset(table))
    try:
        relation = con.sql(args.sql)
        if relation is None:  # a statement without rows (SET, CREATE VIEW…): nothing to print
            return 0
        result = relation.to_arrow_table()
    except duckdb.Error as error:
        sys.stderr.write(f"eventlake-query: {error}\n")
        return 2
    if args.csv:
        pacsv.write_csv(result, sys.stdout.buffer)
        return 0
    frame = pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    with pl.Config(tbl_rows=args.rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        sys.stdout.write(f"{frame}\n")
    return 0
