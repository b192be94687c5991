"""form_progress, component_interactions and error_summary against hand-derived values.

``samples/ui_demo.ndjson`` is a hand-made stream (see samples/README.md); the expected rows below
were worked out by hand from it, person by person, and are commented with how.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipelines.gold import refresh_mart
from tests.conftest import ApiServer, Env, gold_options, materialize_all, silver_table
from tests.integration.test_end_to_end import replay_cli
from warehouse import gold
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS

pytestmark = pytest.mark.integration

DAY1, DAY2 = date(2026, 11, 2), date(2026, 11, 3)
HOST = "https://app.example.com"


def rows(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def fingerprint(error_type: str, frames: list[str]) -> str:
    """The documented fingerprint, computed here from hand-normalized frames."""
    return hashlib.md5("\n".join([error_type, *frames]).encode()).hexdigest()[:16]


JS_FRAMES = [
    f"at renderRow ({HOST}/static/app.js)",  # app.3f9a1c2b.js:120:15 and app.77e0d4aa.js:121:9
    "at Array.map (<anonymous>)",
    f"at Table ({HOST}/static/app.js)",
]
PY_FRAMES = ['File "/srv/app/views.py", in checkout']  # line 42 and line 44


def test_ui_demo_sample_gives_the_hand_derived_marts(api: ApiServer, env: Env) -> None:
    assert "accepted=42" in replay_cli(api, "ui_demo.ndjson")
    materialize_all(env)

    # Forms. Day 1, signup (email, password, company, plan, terms): alice 1-5 + submit; bob 1-2;
    # carol 1-3 then back to 1 (furthest 3); dave 1 then 3 (skipped 2); the crawler (bot) is not
    # counted. Day 2: bob 1-5 + submit, erin 1. Feedback form on day 1: erin 1-2 + submit.
    forms = rows(
        env.warehouse,
        """select day, form, step, field, people_started, people_reached, people_furthest, people_abandoned,
                  people_submitted, reach_rate
           from form_progress where app = 'ui_demo' order by day, form, step""",
    )
    assert forms == [
        (DAY1, "feedback", 1, "rating", 1, 1, 0, 0, 0, 1.0),
        (DAY1, "feedback", 2, "comment", 1, 1, 1, 0, 1, 1.0),
        (DAY1, "signup", 1, "email", 4, 4, 0, 0, 0, 1.0),
        (DAY1, "signup", 2, "password", 4, 4, 1, 1, 0, 1.0),  # bob stopped here
        (DAY1, "signup", 3, "company", 4, 3, 2, 2, 0, 0.75),  # carol and dave stopped here
        (DAY1, "signup", 4, "plan", 4, 1, 0, 0, 0, 0.25),
        (DAY1, "signup", 5, "terms", 4, 1, 1, 0, 1, 0.25),  # alice submitted
        (DAY2, "signup", 1, "email", 2, 2, 1, 1, 0, 1.0),  # erin stopped at the first field
        (DAY2, "signup", 2, "password", 2, 1, 0, 0, 0, 0.5),
        (DAY2, "signup", 3, "company", 2, 1, 0, 0, 0, 0.5),
        (DAY2, "signup", 4, "plan", 2, 1, 0, 0, 0, 0.5),
        (DAY2, "signup", 5, "terms", 2, 1, 1, 0, 1, 0.5),
    ]

    # Components. Day 1 on /dashboard: alice clicks export twice (one on #top), bob once (?tab=2),
    # carol once (component wins over her selector), the crawler once (bot); alice views the
    # revenue chart; bob clicks the settings link known only by its selector. Day 2: dave, export.
    components = rows(
        env.warehouse,
        """select day, page_url, component, interaction, events, people
           from component_interactions where app = 'ui_demo' order by all""",
    )
    assert components == [
        (DAY1, f"{HOST}/dashboard", "export-button", "click", 4, 3),
        (DAY1, f"{HOST}/dashboard", "revenue-chart", "component_view", 1, 1),
        (DAY1, f"{HOST}/settings", "#nav > a.settings", "click", 1, 1),
        (DAY2, f"{HOST}/dashboard", "export-button", "click", 1, 1),
    ]

    # Errors. The TypeError from two builds (other hashes, lines, columns) is one group: alice once,
    # bob twice on day 1. The Python ValueError at line 42 (day 1, carol) and 44 (day 2, dave) is
    # one group. "Request N timed out…" without a stack groups by message: erin and dave on day 2.
    errors = rows(
        env.warehouse,
        """select day, fingerprint, error_type, title, events, people, first_seen_at, last_seen_at
           from error_summary where app = 'ui_demo' order by day, first_seen_at""",
    )
    timeout_title = "Request <n> timed out after <n> ms"
    js, py = fingerprint("TypeError", JS_FRAMES), fingerprint("ValueError", PY_FRAMES)
    timeout = fingerprint("Error", [timeout_title])

    def at(day: date, hms: str) -> datetime:
        return datetime.fromisoformat(f"{day}T{hms}+00:00")

    assert errors == [
        (DAY1, js, "TypeError", "Cannot read properties of undefined (reading '…')", 3, 2)
        + (at(DAY1, "09:10:00"), at(DAY1, "10:20:00")),
        (DAY1, py, "ValueError", "ValueError: invalid literal for int() with base <n>: '…'", 1, 1)
        + (at(DAY1, "11:10:00"), at(DAY1, "11:10:00")),
        (DAY2, timeout, "Error", timeout_title, 2, 2, at(DAY2, "09:10:00"), at(DAY2, "12:11:00")),
        (DAY2, py, "ValueError", "ValueError: invalid literal for int() with base <n>: '…'", 1, 1)
        + (at(DAY2, "12:10:00"), at(DAY2, "12:10:00")),
    ]
    # the serving view spans days: the ValueError group was first seen on day 1, last on day 2
    groups = rows(
        env.serving,
        "select fingerprint, first_seen_at, last_seen_at, events, days_seen from error_groups where app = 'ui_demo'",
    )
    assert (py, at(DAY1, "11:10:00"), at(DAY2, "12:10:00"), 2, 2) in groups


T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def silver(events: list[tuple[str, str, str, object, datetime]], page: str = f"{HOST}/p") -> pa.Table:
    """Silver rows: (event id, person, event type, properties object or JSON text, time) of app 'app'."""
    return silver_table(
        [
            {"event_id": e, "user_id": p, "event_type": t, "properties": props, "timestamp": ts, "app": "app"}
            | {"page_url": page, "source": "local"}
            for e, p, t, props, ts in events
        ]
    )


def test_form_fields_that_cannot_be_placed_are_not_counted(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    second = timedelta(seconds=1)
    lake.append(
        EVENTS,
        silver(
            [
                ("a1", "a", "form_field", {"form": "f", "field": "x", "step": 1}, T0),
                ("a3", "a", "form_field", {"form": "f", "field": "z", "step": 3}, T0 + second),
                # not placeable: text, fraction, zero, negative, far too high, no form, no step
                ("b1", "b", "form_field", {"form": "f", "field": "x", "step": "2"}, T0),
                ("b2", "b", "form_field", {"form": "f", "field": "x", "step": 2.5}, T0),
                ("b3", "b", "form_field", {"form": "f", "field": "x", "step": 0}, T0),
                ("b4", "b", "form_field", {"form": "f", "field": "x", "step": -1}, T0),
                ("b5", "b", "form_field", {"form": "f", "field": "x", "step": 5000}, T0),
                ("b6", "b", "form_field", {"field": "x", "step": 1}, T0),
                ("b7", "b", "form_field", {"form": "f", "field": "x"}, T0),
                ("b8", "b", "form_field", "[1, 2]", T0),
                # a submit for a form the person never filled in starts nothing
                ("c1", "c", "form_submit", {"form": "f"}, T0),
            ]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "form_progress", gold_options())
    assert con.execute(
        "select step, field, people_started, people_reached, people_furthest from form_progress order by step"
    ).fetchall() == [(1, "x", 1, 1, 0), (2, None, 1, 1, 0), (3, "z", 1, 1, 1)]
    con.close()


def test_error_fingerprints_ignore_what_changes_between_builds(tmp_path: Path) -> None:
    firefox = "renderRow@{h}/static/app.{b}.js:{l}:15\n@{h}/static/vendor.js?v={b}:1:{l}"
    java = (
        "java.lang.NullPointerException: null\n\tat com.shop.Cart.total(Cart.java:{l})"
        "\n\tat com.shop.Api.get(Api.java:9)"
    )
    native = "Segfault at 0x{a} in worker {l}"
    events = []
    for i, (build, line, address) in enumerate([("0a1b2c3d4e", 10, "7ffee4b1"), ("99aa88bb77", 999, "1000")]):
        events += [
            (f"f{i}", f"p{i}", "errors", {"stackTrace": firefox.format(h=HOST, b=build, l=line)}, T0),
            (f"j{i}", f"p{i}", "error", {"stack": java.format(l=line)}, T0),  # `error` counts too
            (f"n{i}", f"p{i}", "errors", {"message": native.format(a=address, l=line)}, T0),
        ]
    lake = Lake(str(tmp_path / "lake"))
    lake.append(EVENTS, silver(events))
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "error_summary", gold_options())
    got = con.execute(
        "select fingerprint, error_type, title, events, people from error_summary order by title"
    ).fetchall()
    assert got == sorted(
        [
            (
                fingerprint(
                    "java.lang.NullPointerException",
                    ["at com.shop.Cart.total(Cart.java)", "at com.shop.Api.get(Api.java)"],
                ),
                "java.lang.NullPointerException",
                "java.lang.NullPointerException: null",
                2,
                2,
            ),
            (
                fingerprint("Error", [f"renderRow@{HOST}/static/app.js", f"@{HOST}/static/vendor.js"]),
                "Error",
                f"renderRow@{HOST}/static/app.<hex>.js:<n>:<n>",
                2,
                2,
            ),
            (
                fingerprint("Error", ["Segfault at <hex> in worker <n>"]),
                "Error",
                "Segfault at <hex> in worker <n>",
                2,
                2,
            ),
        ],
        key=lambda row: row[2],
    )

    # a late error on an earlier day rewrites only that day's rows
    lake.append(EVENTS, silver([("late", "p9", "errors", {"message": "late"}, T0 - timedelta(days=3))]))
    stats = refresh_mart(con, lake, "error_summary", gold_options())
    assert (stats.changed_days, stats.rewritten_rows) == (1, 1)
    assert con.execute("select count(*) from error_summary").fetchone() == (4,)
    con.close()


def test_components_need_a_name_or_selector_and_strip_query_and_fragment(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        silver(
            [
                ("a", "a", "click", {"component": "  buy  "}, T0),
                ("b", "b", "click", {"component": "", "selector": "#buy"}, T0),  # empty name: the selector
                ("c", "c", "click", {"component": None}, T0),  # neither: not an interaction
                ("d", "d", "click", "3", T0),
            ],
            page=f"{HOST}/item?id=7#reviews",
        ),
    )
    lake.append(EVENTS, silver([("e", "e", "click", {"selector": "#buy"}, T0)], page=""))
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "component_interactions", gold_options())
    assert con.execute(
        "select page_url, component, events, people from component_interactions order by all"
    ).fetchall() == [
        ("(no page)", "#buy", 1, 1),
        (f"{HOST}/item", "#buy", 1, 1),
        (f"{HOST}/item", "buy", 1, 1),
    ]
    con.close()


def test_the_stack_not_the_message_decides_type_and_group(tmp_path: Path) -> None:
    # Regression (hostile review): a word ending in Error in the message, a frame named handleError
    # or an empty stackTrace next to `stack` split one crash into several groups.
    stack = "TypeError: x is undefined\n    at handleError (https://a/app.js:1:2)"
    lake = Lake(str(tmp_path / "lake"))
    lake.append(
        EVENTS,
        silver(
            [
                (
                    "a",
                    "p1",
                    "errors",
                    {"message": "request failed: NetworkError when fetching", "stackTrace": stack},
                    T0,
                ),
                ("b", "p2", "errors", {"message": "request failed: timeout", "stackTrace": stack}, T0),
                ("c", "p3", "errors", {"stackTrace": "", "stack": stack}, T0),
            ]
        ),
    )
    con = gold.connect(tmp_path / "w.duckdb")
    refresh_mart(con, lake, "error_summary", gold_options())
    assert con.execute("select error_type, events from error_summary").fetchall() == [("TypeError", 3)]
    con.close()
