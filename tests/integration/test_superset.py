"""Real Superset (from .venv-superset) on a loopback port: every chart's data equals the gold tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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


def login(url: str, account: service.Admin) -> httpx.Client:
    """A browser-like session: login form, then the CSRF token for API writes."""
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    form = client.get("/login/").text
    token = form.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert (
        client.post(
            "/login/", data={"username": account.username, "password": account.password, "csrf_token": token}
        ).status_code
        == 302
    )
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


def gold(env: Env, sql: str) -> set[tuple]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        return set(con.execute(sql).fetchall())
    finally:
        con.close()


def test_provisioning_is_idempotent(superset: Superset) -> None:
    for kind, expected in (("database", 1), ("dataset", 14), ("chart", 25), ("dashboard", 8)):
        assert superset.session.get(f"/api/v1/{kind}/").json()["count"] == expected, kind


def test_every_chart_returns_the_gold_numbers(superset: Superset) -> None:
    rows = chart_rows(superset)
    env = superset.env
    assert len(rows) == 25

    assert {(day(r["day"]), r["app"], r["DAU"]) for r in rows["DAU per app"]} == gold(
        env, "select day, app, dau from daily_active_users"
    )
    assert {
        (day(r["day"]), r["app"], r["MAU rolling 30d"], r["MAU calendar month"])
        for r in rows["MAU per app (rolling 30 days and calendar month)"]
    } == gold(env, "select day, app, mau_rolling_30d, mau_calendar_month from monthly_active_users")
    assert {
        (day(r["day"]), r["app"], r["WAU rolling 7d"], r["WAU calendar week"])
        for r in rows["WAU per app (rolling 7 days and calendar week)"]
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
    page_views = {
        (a, p): v for a, p, v in gold(env, "select app, page_url, sum(views) from daily_page_views group by all")
    }
    top = [(r["app"], r["page_url"], r["views"]) for r in rows["Top pages"]]
    assert len(top) == 20 and all(page_views[(a, p)] == v for a, p, v in top)
    assert [v for _, _, v in top] == sorted(page_views.values(), reverse=True)[:20]
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
    assert {
        (day(r["day"]), r["app"], r["reason_type"], r["reason"], r["events"])
        for r in rows["Quarantined events by reason"]
    } == gold(env, "select day, app, reason_type, reason, events from data_quality_daily where outcome = 'quarantined'")
    assert {(r["reason_type"], r["reason"]) for r in rows["Quarantined events by reason"]} == {
        ("timestamp_out_of_range", "timestamp_after_2000")
    }
    outcomes = {r["outcome"] for r in rows["Received events per day by outcome"]}
    assert {"valid", "bot", "quarantined"} <= outcomes  # the access log has crawlers
    funnel_chart = rows["Shop checkout funnel (daily attempts per step, summed over days)"]
    checkout = {r["step_name"]: r["people"] for r in funnel_chart}
    assert set(checkout.items()) == gold(
        env,
        "select step_name, sum(people) from funnel_steps where funnel = 'shop_checkout' and period = 'day' group by 1",
    )
    assert len(checkout) == 6 and checkout["catalog"] > checkout["paid"] > 0

    def rounded(row: tuple) -> tuple:
        return tuple(round(v, 6) if isinstance(v, float) else v for v in row)

    weekly = {
        rounded((r["funnel"], r["app"], day(r["day"]), r["step"], r["step_name"], r["people"], r["conversion_rate"]))
        + rounded((r["step_conversion_rate"], r["dropped_off"], r["median_s_from_previous"]))
        for r in rows["Funnel steps per week (where people drop off)"]
    }
    assert weekly == {
        rounded(row)
        for row in gold(
            env,
            """select funnel, app, day, step, step_name, people, conversion_rate, step_conversion_rate, dropped_off,
                      median_s_from_previous
               from funnel_steps where period = 'week'""",
        )
    }
    assert {
        (r["step"], r["form"], r["people reached"]) for r in rows["People reaching each form field (summed over days)"]
    } == gold(env, "select step, form, sum(people_reached) from form_progress group by all")
    assert {
        (r["form"], r["step"], r["field"], r["furthest here"], r["abandoned here"], r["submitted"])
        for r in rows["Where people abandon each form (furthest field reached)"]
    } == gold(
        env,
        """select form, step, field, sum(people_furthest), sum(people_abandoned), sum(people_submitted)
           from form_progress group by all""",
    )
    top_components = [
        (r["app"], r["page_url"], r["component"], r["interaction"], r["events"], r["people-days"])
        for r in rows["Top components (events, people summed over days)"]
    ]
    assert set(top_components) == gold(
        env,
        """select app, page_url, component, interaction, sum(events), sum(people)
           from component_interactions group by all""",
    )
    assert [row[4] for row in top_components] == sorted((row[4] for row in top_components), reverse=True)
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
        (r["app"], r["breakdown"], r["value"], r["people-days"])
        for r in rows["People by country and user attribute (summed over days)"]
    }
    assert audience == gold(
        env,
        """select app, breakdown, value, sum(active_users) from active_users_breakdown
           where breakdown not in ('platform', 'device_type', 'browser_family', 'os_family') group by all""",
    )
    assert {r[:3] for r in audience if r[1] == "user.plan"} >= {
        ("onlineshop_2019", "user.plan", v) for v in ("free", "pro", "(none)")
    }
    groups = {
        (r["app"], r["fingerprint"], r["error_type"], r["title"], r["events"], r["days_seen"], r["max_daily_people"])
        for r in rows["Error groups (first and last seen)"]
    }
    serving = duckdb.connect(str(env.serving), read_only=True)
    try:
        expected_groups = set(
            serving.execute(
                "select app, fingerprint, error_type, title, events, days_seen, max_daily_people from error_groups"
            ).fetchall()
        )
    finally:
        serving.close()
    assert groups == expected_groups and len(groups) == 3  # the sample's three error groups
    assert {(day(r["day"]), r["error_type"], r["errors"]) for r in rows["Errors per day by type"]} == gold(
        env, "select day, error_type, sum(events) from error_summary group by all"
    )
    assert (
        {(day(r["day"]), r["app"], r["sessions"]) for r in rows["Sessions per app"]}
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
        (r["app"], day(r["cohort_week"]), r["week_number"], r["cohort_people"], r["retained_people"])
        for r in rows["Retention cohorts (people)"]
    } == gold(env, "select app, cohort_week, week_number, cohort_people, retained_people from retention_cohorts")
    assert {(r["layer"], r["table_name"], r["version"]) for r in rows["Last update and size per layer and tier"]} >= {
        ("gold", m, v) for m, v in gold(env, "select mart, silver_version from gold_watermarks")
    }


CHROMIUM = Path("/usr/bin/chromium")
_DRAWN = """
containers => containers.map(container => {
  const canvases = [...container.querySelectorAll('canvas')];
  const pixels = canvases.reduce((total, canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) drawn++;
    return total + drawn;
  }, 0);
  return {
    pixels,
    rows: container.querySelectorAll('tbody tr').length,
    errors: container.querySelectorAll('[data-test="alert"], .ant-alert-error').length,
    loading: container.querySelectorAll('.loading').length,
  };
})
"""


#: Every dashboard of the bundle, by slug, with its number of charts.
DASHBOARDS = {
    "overview": 9,
    "audience": 3,
    "funnels": 2,
    "forms": 2,
    "components": 2,
    "errors": 2,
    "retention": 2,
    "data-quality": 3,
}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is installed by make packages (apt-get)")
def test_every_dashboard_renders_every_chart_in_chromium(superset: Superset, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    account = service.admin(superset.env.data_dir)
    screenshot = tmp_path / "overview.png"
    drawn: dict[str, list[dict[str, Any]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        # Only loopback: Superset pages link web fonts this machine cannot (and must not) reach.
        page.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith(superset.url) else route.abort()
        )
        page.goto(f"{superset.url}/login/")
        page.fill("#username, input[name=username]", account.username)
        page.fill("#password, input[name=password]", account.password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        for slug, count in DASHBOARDS.items():
            page.goto(f"{superset.url}/superset/dashboard/eventlake-{slug}/")
            page.wait_for_function(
                f"() => document.querySelectorAll('.chart-container').length === {count} &&"
                " document.querySelectorAll('.chart-container .loading').length === 0",
                timeout=90_000,
            )
            page.wait_for_timeout(2_000)  # let ECharts finish its draw animation
            drawn[slug] = page.eval_on_selector_all(".chart-container", _DRAWN)
            if slug == "overview":
                page.screenshot(path=str(screenshot), full_page=True)
        browser.close()

    readme_copy = os.environ.get("EVENTLAKE_README_SCREENSHOT")
    if readme_copy:
        shutil.copyfile(screenshot, readme_copy)
    assert screenshot.stat().st_size > 10_000
    assert {slug: len(charts) for slug, charts in drawn.items()} == DASHBOARDS
    for slug, charts in drawn.items():
        for chart in charts:
            assert chart["errors"] == 0 and chart["loading"] == 0, (slug, chart)
            assert chart["pixels"] > 1_000 or chart["rows"] > 0, (slug, chart)
