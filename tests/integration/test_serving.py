"""The serving snapshot is replaced atomically: readers never see an error or a mix of versions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import duckdb
import pytest

from warehouse import gold
from warehouse.marts import catalog
from warehouse.serving import publish_snapshot

pytestmark = pytest.mark.integration

READER = textwrap.dedent(
    """
    import json, sys, time, duckdb
    path, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            con = duckdb.connect(path, read_only=True)  # a new connection per query, like Superset
            dau = con.execute("select max(dau) from daily_active_users").fetchone()[0]
            mau = con.execute("select max(mau_rolling_30d) from monthly_active_users").fetchone()[0]
            ratio = con.execute("select max(dau_mau_ratio) from overview_daily").fetchone()[0]
            con.close()
            print(json.dumps({"dau": dau, "mau": mau, "ratio": ratio}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": repr(exc)}), flush=True)
    """
)


def write_version(con: duckdb.DuckDBPyConnection, version: int) -> None:
    con.execute("delete from daily_active_users; delete from weekly_active_users; delete from monthly_active_users")
    con.execute(
        "insert into daily_active_users (app, source, day, dau) values ('a', 'web', ?, ?)", [date(2024, 1, 1), version]
    )
    con.execute(
        "insert into weekly_active_users (app, source, day, calendar_week, wau_rolling_7d, wau_calendar_week)"
        " values ('a', 'web', ?, ?, ?, ?)",
        [date(2024, 1, 1), date(2024, 1, 1), version, version],
    )
    con.execute(
        "insert into monthly_active_users (app, source, day, calendar_month, mau_rolling_30d, mau_calendar_month)"
        " values ('a', 'web', ?, ?, ?, ?)",
        [date(2024, 1, 1), date(2024, 1, 1), version * 2, version * 2],
    )


def test_reader_never_sees_an_error_or_a_mix_while_republished_20_times(tmp_path: Path) -> None:
    con = gold.connect(tmp_path / "warehouse.duckdb")
    target = tmp_path / "serving" / "serving.duckdb"
    write_version(con, 1)
    publish_snapshot(con, target, catalog())

    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), "8"], stdout=subprocess.PIPE, text=True)
    for version in range(2, 22):
        write_version(con, version)
        stats = publish_snapshot(con, target, catalog())
        assert stats.row_counts["daily_active_users"] == 1
    out, _ = reader.communicate(timeout=60)
    con.close()

    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) > 20
    assert [r for r in results if "error" in r] == []
    assert all(r["mau"] == 2 * r["dau"] and r["ratio"] == 0.5 for r in results)  # never old + new mixed
    assert len({r["dau"] for r in results}) > 1  # the reader did see republished versions
    assert list(target.parent.glob("*.tmp")) == []  # no staging file left behind
