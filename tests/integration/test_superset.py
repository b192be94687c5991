"""Real Superset (from .venv-superset) on a loopback port: every chart's data equals the gold tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from dashboards import service
from tests.conftest import SAMPLES, ApiServer, Env, free_port, materialize_all, start_api

pytestmark = [pytest.mark.integration, pytest.mark.superset]


@dataclass
class Superset:
    url: str
    session: httpx.Client
    env: Env


def login_form(account: service.Admin, page: str) -> dict[str, str]:
    """The fields Superset's login form posts, with the CSRF token of the login ``page`` (its HTML)."""
    token = page.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    return {"username": account.username, "password": account.password, "csrf_token": token}


def login(url: str, account: service.Admin) -> httpx.Client:
    """A browser-like session: login form, then the CSRF token for API writes."""
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    assert client.post("/login/", data=login_form(account, client.get("/login/").text)).status_code == 302
    return client


@pytest.fixture(scope="module")
def superset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superset]:
    env = Env(tmp_path_factory.mktemp("superset") / "data")
    env.data_dir.mkdir()
    api: ApiServer = start_api(env)
    try:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "eventlake-replay"),
                "--api-url",
                api.url,
                f"--write-key={api.key}",
                "--no-progress",
                str(SAMPLES / "web_access_2015.log"),
                str(SAMPLES / "onlineshop_2019.csv"),
                str(SAMPLES / "ui_demo.ndjson"),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        api.post(
            "/v1/events",
            json=[  # one quarantined event for the data-quality charts
                {"uuid": "dq-1", "timestamp": "1999-01-01T00:00:00Z", "app": "onlineshop_2019", "user": "u"}
            ],
        )
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)
    # a users source for the attribute chart: two shop users on plans, one upgraded during their visit
    users = env.data_dir / "users.csv"
    users.write_text(
        "app,user_id,valid_from,plan\nonlineshop_2019,219483890,,free\nonlineshop_2019,964964743,2019-11-01T21:38:30Z,pro\n"
    )
    os.environ["EVENTLAKE_USERS_PATH"] = str(users)
    try:
        materialize_all(env)
    finally:
        del os.environ["EVENTLAKE_USERS_PATH"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = service.environment(env.data_dir)
    account = service.admin(env.data_dir)
    log = env.data_dir / "superset.log"
    service.initialize(environment, account, log)
    proc = subprocess.Popen(service.start_args(port), env=environment, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        service.wait_healthy(url, 180, proc)
        service.provision(environment, account, url, env.serving, log)
        service.provision(environment, account, url, env.serving, log)  # idempotent: run twice
        yield Superset(url, login(url, account), env)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def chart_rows(superset: Superset) -> dict[str, list[dict[str, Any]]]:
    charts = superset.session.get("/api/v1/chart/", params={"q": "(columns:!(id,slice_name),page_size:100)"})
    result = {}
    for chart in charts.json()["result"]:
        response = superset.session.get(f"/api/v1/chart/{chart['id']}/data/")
        assert response.status_code == 200, (chart["slice_name"], response.text[:500])
        result[chart["slice_name"]] = response.json()["result"][0]["data"]
    return result


def day(ms: float) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def query(path: Path, sql: str) -> set[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return set(con.execute(sql).fetchall())
    finally:
        con.close()


def gold(env: Env, sql: str) -> set[tuple]:
    return query(env.warehouse, sql)


def served(env: Env, sql: str) -> set[tuple]:
    """Rows of the serving snapshot, the database Superset reads (gold plus its serving views)."""
    return query(env.serving, sql)


def test_provisioning_is_idempotent(superset: Superset) -> None:
    for kind, expected in (("database", 1), ("dataset", 15), ("chart", 26), ("dashboard", 8)):
        assert superset.session.get(f"/api/v1/{kind}/").json()["count"] == expected, kind


def test_every_chart_returns_the_gold_numbers(superset: Superset) -> None:
    rows = chart_rows(superset)
    env = superset.env
    assert len(rows) == 26

    assert {(day(r["day"]), r["app"], r["DAU"]) for r in rows["DAU"]} == gold(
        env, "select day, app, dau from daily_active_users"
    )
    assert {
        (day(r["day"]), r["app"], r["MAU rolling 30d"], r["MAU calendar month"])
        for r in rows["MAU (rolling 30 days and calendar month)"]
    } == gold(env, "select day, app, mau_rolling_30d, mau_calendar_month from monthly_active_users")
    assert {
        (day(r["day"]), r["app"], r["WAU rolling 7d"], r["WAU calendar week"])
        for r in rows["WAU (rolling 7 days and calendar week)"]
    } == gold(env, "select day, app, wau_rolling_7d, wau_calendar_week from weekly_active_users")
    assert {(day(r["day"]), r["app"], r["DAU/MAU"]) for r in rows["Stickiness (DAU / MAU)"]} == gold(
        env,
        """
        select d.day, d.app, round(d.dau / nullif(m.mau_rolling_30d, 0), 4)
        from daily_active_users d join monthly_active_users m using (app, day)""",
    )
    assert {(day(r["day"]), r["event_type"], r["events"]) for r in rows["Events by type per day"]} == gold(
        env,
        """
        select day, event_type, sum(events) from daily_event_counts where not is_bot group by all""",
    )
    page_views = dict(gold(env, "select page_url, sum(views) from daily_page_views group by all"))
    top = [(r["page_url"], r["views"]) for r in rows["Top pages"]]
    assert len(top) == 20 and all(page_views[p] == v for p, v in top)
    assert [v for _, v in top] == sorted(page_views.values(), reverse=True)[:20]
    bot = {(day(r["day"]), r["app"]): r["bot share"] for r in rows["Share of bot traffic"]}
    expected_bot = gold(
        env,
        """select day, app, sum(events) filter (where is_bot) * 1.0 / sum(events)
                                from daily_event_counts group by all""",
    )
    assert {k: round(v or 0, 6) for k, v in bot.items()} == {(d, a): round(v or 0, 6) for d, a, v in expected_bot}
    assert {(day(r["day"]), r["outcome"], r["events"]) for r in rows["Received events per day by outcome"]} == gold(
        env, "select day, outcome, sum(events) from data_quality_daily group by all"
    )
    quarantined = "from data_quality_daily where outcome = 'quarantined' group by all"
    assert {
        (day(r["day"]), r["reason_type"], r["reason"], r["events"]) for r in rows["Quarantined events by reason"]
    } == gold(env, f"select day, reason_type, reason, sum(events) {quarantined}")
    assert {
        (day(r["day"]), r["reason"], r["quarantined events"]) for r in rows["Quarantined events per day by reason"]
    } == gold(env, f"select day, reason, sum(events) {quarantined}")
    assert {(r["reason_type"], r["reason"]) for r in rows["Quarantined events by reason"]} == {
        ("timestamp_out_of_range", "timestamp_after_2000")
    }
    outcomes = {r["outcome"] for r in rows["Received events per day by outcome"]}
    assert {"valid", "bot", "quarantined"} <= outcomes  # the access log has crawlers
    funnel_chart = rows["Funnel: people at each step (daily attempts, summed over days)"]
    checkout = {r["step_name"]: r["people"] for r in funnel_chart}  # the sample's one funnel: shop_checkout
    assert set(checkout.items()) == gold(
        env, "select step_name, sum(people) from funnel_steps where period = 'day' group by 1"
    )
    assert len(checkout) == 6 and checkout["catalog"] > checkout["paid"] > 0

    def rounded(row: tuple) -> tuple:
        return tuple(round(v, 6) if isinstance(v, float) else v for v in row)

    weekly = {
        rounded((day(r["day"]), r["step"], r["step_name"], r["people"], r["conversion_rate"]))
        + rounded((r["step_conversion_rate"], r["dropped_off"], r["median_s_from_previous"]))
        for r in rows["Funnel steps per week (where people drop off)"]
    }
    assert weekly == {
        rounded(row)
        for row in gold(
            env,
            """select day, step, step_name, people, conversion_rate, step_conversion_rate, dropped_off,
                      median_s_from_previous
               from funnel_steps where period = 'week'""",
        )
    }
    # the bar chart's x axis: each field's name after its position, so the bars keep the form's order
    assert {
        (r["field"], r["form"], r["people reached"]) for r in rows["People reaching each form field (summed over days)"]
    } == {
        (f"{step:>2}. {field or '(none)'}", form, people)
        for step, field, form, people in gold(
            env, "select step, field, form, sum(people_reached) from form_progress group by all"
        )
    }
    abandon = [
        (r["step"], r["field"], r["furthest here"], r["abandoned here"], r["submitted"])
        for r in rows["Where people abandon each form (furthest field reached)"]
    ]
    assert set(abandon) == gold(
        env,
        """select step, field, sum(people_furthest), sum(people_abandoned), sum(people_submitted)
           from form_progress group by all""",
    )
    assert [row[0] for row in abandon] == sorted(row[0] for row in abandon)
    top_components = [
        (r["page_url"], r["component"], r["interaction"], r["events"], r["people-days"])
        for r in rows["Top components (events, people summed over days)"]
    ]
    assert set(top_components) == gold(
        env,
        """select page_url, component, interaction, sum(events), sum(people)
           from component_interactions group by all""",
    )
    assert [row[3] for row in top_components] == sorted((row[3] for row in top_components), reverse=True)
    assert {(day(r["day"]), r["component"], r["events"]) for r in rows["Component interactions per day"]} == gold(
        env, "select day, component, sum(events) from component_interactions group by all"
    )
    assert {(day(r["day"]), r["new"], r["returning"]) for r in rows["New vs returning people"]} == gold(
        env, "select day, sum(new_people), sum(returning_people) from daily_active_users group by all"
    )
    for dimension in ("platform", "device_type"):
        title = f"Active people by {dimension.replace('_', ' ')}"
        assert {(day(r["day"]), r["value"], r["people"]) for r in rows[title]} == gold(
            env,
            "select day, value, sum(active_users) from active_users_breakdown"
            f" where breakdown = '{dimension}' group by all",
        )
    audience = {
        (r["breakdown"], r["value"], r["people-days"])
        for r in rows["People by country and user attribute (summed over days)"]
    }
    assert audience == gold(
        env,
        """select breakdown, value, sum(active_users) from active_users_breakdown
           where breakdown not in ('platform', 'device_type', 'browser_family', 'os_family') group by all""",
    )
    assert {r[:2] for r in audience if r[0] == "user.plan"} >= {("user.plan", v) for v in ("free", "pro", "(none)")}
    groups = [
        (r["fingerprint"], r["error_type"], r["title"], r["events"], r["days_seen"], r["max_daily_people"])
        for r in rows["Error groups (first and last seen)"]
    ]
    expected_groups = served(
        env, "select fingerprint, error_type, title, events, days_seen, max_daily_people from error_groups"
    )
    assert set(groups) == expected_groups and len(groups) == 3  # the sample's three error groups
    last_seen = [r["last_seen_at"] for r in rows["Error groups (first and last seen)"]]
    assert last_seen == sorted(last_seen, reverse=True)
    assert {(day(r["day"]), r["error_type"], r["errors"]) for r in rows["Errors per day by type"]} == gold(
        env, "select day, error_type, sum(events) from error_summary group by all"
    )
    assert (
        {(day(r["day"]), r["app"], r["sessions"]) for r in rows["Sessions per day"]}
        == gold(env, "select day, app, count(*) from sessions group by all")
        == gold(env, "select day, app, sessions from daily_sessions")
    )
    heatmap = rows["Weekly retention by first-seen cohort (share of the cohort active N weeks later)"]
    assert {(day(r["cohort_week"]), r["week_number"], round(r["retention"], 9)) for r in heatmap} == {
        (week, n, round(rate, 9))
        for week, n, rate in gold(
            env,
            """select cohort_week, week_number, sum(retained_people) * 1.0 / sum(cohort_people)
               from retention_cohorts where week_number <= 12 group by all""",
        )
    }
    assert {
        (day(r["cohort_week"]), r["week_number"], r["cohort_people"], r["retained_people"], r["retention_rate"])
        for r in rows["Retention cohorts (people)"]
    } == gold(
        env, "select cohort_week, week_number, cohort_people, retained_people, retention_rate from retention_cohorts"
    )
    assert {(r["layer"], r["table_name"], r["version"]) for r in rows["Last update and size per layer and tier"]} >= {
        ("gold", m, v) for m, v in gold(env, "select mart, silver_version from gold_watermarks")
    }


CHROMIUM = Path("/usr/bin/chromium")
#: Headless Chromium's flags here (the browser test's and bench/bench_dashboard_load.py's).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Only loopback: Superset pages link web fonts and a telemetry pixel this machine cannot (and must
    # not) reach. Not a Playwright route: routing turns the HTTP cache off, and every dashboard then
    # downloads Superset's ~50 scripts again from gunicorn.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
#: Set to a folder (``EVENTLAKE_DOCS_PICTURES=docs``) to keep the browser test's picture of each dashboard
#: there as ``<slug>.png``; unset, the pictures go to the test's temporary folder.
PICTURES = "EVENTLAKE_DOCS_PICTURES"
VIEWPORT = {"width": 1440, "height": 900}

#: Each chart's state; ``pixels`` (drawn canvas pixels) only when called with true, as reading them is slow.
_CHARTS = """
withPixels => [...document.querySelectorAll('[data-test="chart-grid-component"]')].map(chart => {
  const canvases = [...chart.querySelectorAll('canvas')];
  const pixels = !withPixels ? null : canvases.reduce((total, canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) drawn++;
    return total + drawn;
  }, 0);
  return {
    id: Number(chart.dataset.testChartId),
    name: chart.dataset.testChartName,
    canvases: canvases.length,
    pixels,
    rows: chart.querySelectorAll('tbody tr').length,
    empty: chart.textContent.includes('No results were returned'),
    errors: chart.querySelectorAll('[data-test="alert"], .ant-alert-error').length,
    loading: chart.querySelectorAll('.loading').length,
  };
})
"""
#: Table cells whose text does not fit: wider than the cell, past the chart's right edge (a column
#: cut off), or wrapped onto more than three lines.
_CUT_CELLS = """
() => [...document.querySelectorAll('[data-test="chart-grid-component"]')].flatMap(chart => {
  const edge = chart.getBoundingClientRect().right;
  const lines = cell => {
    const tops = new Set();
    const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let text = texts.nextNode(); text; text = texts.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(text);
      for (const rect of range.getClientRects()) if (rect.width > 0) tops.add(Math.round(rect.top));
    }
    return tops.size;
  };
  return [...chart.querySelectorAll('th, td')]
    .filter(cell => cell.getClientRects().length > 0)
    .map(cell => ({
      chart: chart.dataset.testChartName,
      text: cell.textContent.trim().slice(0, 60),
      scrollWidth: cell.scrollWidth,
      clientWidth: cell.clientWidth,
      right: Math.round(cell.getBoundingClientRect().right),
      edge: Math.round(edge),
      lines: lines(cell),
    }))
    .filter(cell => cell.scrollWidth > cell.clientWidth || cell.right > cell.edge || cell.lines > 3);
})
"""


@dataclass(frozen=True)
class Dashboard:
    """What a dashboard shows when it is opened with no state in its URL."""

    charts: int
    #: filtered column -> the serving-snapshot query of the value its filter opens on (the busiest first)
    defaults: dict[str, str]
    #: charts with nothing to show for those values in the test's samples
    empty: frozenset[str] = frozenset()


def _busiest(column: str, measure: str, table: str, where: str = "true") -> str:
    """The serving-snapshot query of the value with the largest ``sum(measure)``: what a select filter
    sorted by that metric, descending, opens on."""
    return f"select {column} from {table} where {where} group by 1 order by sum({measure}) desc limit 1"


_APP_BY_EVENTS = _busiest("app", "events", "events_by_type_daily")
_APP_BY_ATTEMPTS = _busiest("app", "people", "funnel_steps", "period = 'day' and step = 1")
_APP_BY_FORM_EVENTS = _busiest("app", "events", "events_by_type_daily", "event_type = 'form_field'")

#: Every dashboard of the bundle, by slug.
DASHBOARDS = {
    # the shop CSV, the busiest app, sends named actions and no page views
    "overview": Dashboard(9, {"app": _APP_BY_EVENTS}, frozenset({"Top pages"})),
    # the app with the most people-days of a known platform, device type or country
    "audience": Dashboard(
        3,
        {
            "app": _busiest(
                "app",
                "active_users",
                "active_users_breakdown",
                "breakdown in ('platform', 'device_type', 'country') and value <> '(unknown)'",
            )
        },
    ),
    "funnels": Dashboard(
        2,
        {
            "app": _APP_BY_ATTEMPTS,
            "funnel": _busiest(
                "funnel", "people", "funnel_steps", f"period = 'day' and step = 1 and app = ({_APP_BY_ATTEMPTS})"
            ),
        },
    ),
    "forms": Dashboard(
        2,
        {
            "app": _APP_BY_FORM_EVENTS,
            "form": _busiest("form", "people_reached", "form_progress", f"step = 1 and app = ({_APP_BY_FORM_EVENTS})"),
        },
    ),
    "components": Dashboard(2, {"app": _busiest("app", "events", "component_interactions")}),
    "errors": Dashboard(2, {"app": _busiest("app", "events", "error_summary")}),
    "retention": Dashboard(2, {"app": _APP_BY_EVENTS}),
    "data-quality": Dashboard(4, {"app": _busiest("app", "events", "data_quality_daily")}),
}
#: Charts about the pipeline rather than one app: no App filter applies to them.
UNFILTERED = {"Last update and size per layer and tier"}


def _login_page(playwright: Any, superset: Superset) -> Any:
    """A 1440x900 page of a fresh headless Chromium, logged in, that reaches nothing but Superset."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    context = browser.new_context(viewport=VIEWPORT)
    # The login form is posted from the context, whose cookies its pages share: typing into the page's
    # form and pressing Enter left the page on /login/ in 2 of ~15 logins on a busy machine (load 9).
    account = service.admin(superset.env.data_dir)
    form = login_form(account, context.request.get(f"{superset.url}/login/").text())
    assert context.request.post(f"{superset.url}/login/", form=form, max_redirects=0).status == 302
    return context.new_page()


def _settled(page: Any) -> list[dict[str, Any]]:
    """The charts' state once ECharts' draw animations are over: no drawn pixel changes for 0.5 s
    (on a busy machine an animation takes several seconds, and a picture taken during it shows half-drawn lines)."""
    before = page.evaluate(_CHARTS, True)
    for _ in range(60):
        page.wait_for_timeout(500)
        after = page.evaluate(_CHARTS, True)
        if after == before:
            return after
        before = after
    raise AssertionError(f"charts still drawing after 30 s: {before}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is installed by make packages (apt-get)")
def test_every_dashboard_opens_on_the_busiest_app_with_nothing_cut(
    superset: Superset, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Each dashboard, opened with no state in its URL at 1440x900: its filters show the busiest app
    (and funnel, form), every chart query is filtered by them, every chart is drawn, and no table cell
    is cut; a full-page picture of each is kept (``EVENTLAKE_DOCS_PICTURES``). The seconds from
    navigation to every chart drawn are recorded as ``render_s[<slug>]`` (``--junitxml``)."""
    from playwright.sync_api import sync_playwright

    pictures = Path(os.environ.get(PICTURES) or tmp_path)
    with sync_playwright() as playwright:
        page = _login_page(playwright, superset)
        queries: list[dict[str, Any]] = []
        page.on(
            "request",
            lambda request: (
                queries.append(json.loads(request.post_data or "{}")) if "/api/v1/chart/data" in request.url else None
            ),
        )
        for slug, dashboard in DASHBOARDS.items():
            defaults = {column: served(superset.env, sql).pop()[0] for column, sql in dashboard.defaults.items()}
            queries.clear()
            started = time.monotonic()
            page.goto(f"{superset.url}/superset/dashboard/eventlake-{slug}/")
            page.wait_for_function(
                f"""() => {{
                  const charts = ({_CHARTS})(false);
                  return charts.length === {dashboard.charts} && charts.every(chart => chart.loading === 0
                    && (chart.canvases > 0 || chart.rows > 0 || chart.empty || chart.errors > 0));
                }}""",
                timeout=90_000,
                polling=100,
            )
            record_property(f"render_s[{slug}]", round(time.monotonic() - started, 1))
            charts = _settled(page)
            for chart in charts:
                assert chart["errors"] == 0 and chart["loading"] == 0, (slug, chart)
            undrawn = [c for c in charts if c["pixels"] <= 1000 and c["rows"] == 0]
            assert {c["name"] for c in undrawn} == dashboard.empty and all(c["empty"] for c in undrawn), slug

            shown = {
                column: page.text_content(f'[data-test="NATIVE_FILTER-{slug.replace("-", "_")}-{column}"]')
                for column in defaults
            }
            assert shown == defaults, slug
            names = {c["id"]: c["name"] for c in charts}
            chart_queries = [q for q in queries if q.get("form_data", {}).get("slice_id") in names]
            assert {q["form_data"]["slice_id"] for q in chart_queries} == names.keys(), slug
            for query in chart_queries:
                name = names[query["form_data"]["slice_id"]]
                filters = query["queries"][0]["filters"]
                for column, value in defaults.items():
                    wanted = {"col": column, "op": "IN", "val": [value]}
                    assert (wanted in filters) != (name in UNFILTERED), (slug, name, filters)

            assert page.evaluate(_CUT_CELLS) == [], slug
            picture = pictures / f"{slug}.png"
            page.screenshot(path=str(picture), full_page=True)
            assert picture.stat().st_size > 10_000
        page.context.browser.close()
