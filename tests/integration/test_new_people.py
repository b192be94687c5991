"""New vs returning people: hand-made late events and identity merges, read back from the rows and
their lineage (the samples are checked against Polars in test_end_to_end)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import gold_options, silver_table
from tests.integration.test_identity import stamped
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS

pytestmark = pytest.mark.integration

D1, D2, D3, D4, D5 = (date(2024, 3, d) for d in (4, 5, 6, 7, 8))


def rows(events: list[tuple[date, str | None, str | None]], event_type: str = "page_view") -> pa.Table:
    """(day, user_id, anonymous_id) → silver rows of app 'a' at noon UTC."""
    return silver_table(
        [
            {"timestamp": datetime(d.year, d.month, d.day, 12, tzinfo=UTC), "event_type": event_type}
            | {"user_id": user, "anonymous_id": anonymous}
            for d, user, anonymous in events
        ]
    )


def test_late_first_visits_and_merges_move_new_people_and_rewrite_the_day_they_left(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS, rows([(D2, "u1", None), (D3, "u1", None), (D1, "u2", None), (D3, "u2", None), (D1, None, "anon-9")])
    )
    con = gold.connect(tmp_path / "w.duckdb")
    split = "select day, dau, new_people, returning_people from daily_active_users order by day"
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute(split).fetchall() == [(D1, 2, 2, 0), (D2, 1, 1, 0), (D3, 2, 0, 2)]

    # u1's late first visit on D1: D1 gains a new person and D2 loses one, though no D2 event came
    late = lake.append(EVENTS, rows([(D1, "u1", None)]))
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute(split).fetchall() == [(D1, 3, 3, 0), (D2, 1, 0, 1), (D3, 2, 0, 2)]
    assert stamped(con, "daily_active_users", late) == {D1, D2}  # D3 untouched

    # anon-9 (new on D1) identifies as u3 on D5: u3 inherits D1 as first visit, so returns on D5
    merge = lake.append(EVENTS, rows([(D5, "u3", "anon-9")], event_type="identify"))
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute(split).fetchall() == [
        (D1, 3, 3, 0),  # u2, u1, u3 (was anon-9)
        (D2, 1, 0, 1),
        (D3, 2, 0, 2),
        (D4, 0, 0, 0),
        (D5, 1, 0, 1),
    ]
    assert D1 in stamped(con, "daily_active_users", merge) and not stamped(con, "daily_active_users", merge) & {D2, D3}
    first_seen = "select person_id, first_seen from person_first_seen where person_id in ('u1', 'u3') order by 1"
    noon = datetime(2024, 3, 4, 12, tzinfo=UTC)
    assert [(p, t.astimezone(UTC)) for p, t in con.execute(first_seen).fetchall()] == [("u1", noon), ("u3", noon)]

    # a rerun changes nothing; a later event never moves a first visit later
    before = con.execute(split).fetchall()
    lake.append(EVENTS, rows([(D5, "u2", None)]))
    refresh_mart(con, lake, "daily_active_users", gold_options())
    assert con.execute(split).fetchall() == [*before[:4], (D5, 2, 0, 2)]
