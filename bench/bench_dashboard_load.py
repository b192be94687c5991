"""Dashboard load time in a warm Chromium: navigation start until every chart is drawn, per dashboard.

For each snapshot (gold built from --events generated silver events by the pipeline's own mart
code, and the bundled samples' snapshot with --samples-snapshot) starts a real Superset from
.venv-superset with the project's settings (results cache off, as shipped) on a free loopback port,
provisions the bundle against it, logs one Chromium page in (Debian's /usr/bin/chromium driven by
Python playwright) and loads every dashboard of the bundle once uncounted (warm-up), then --loads
times each, round robin, in the same page: a warm browser (HTTP cache, compiled code, login kept).

A load's time is measured with the browser's own clock: from navigation start
(``performance.timeOrigin``; ``performance.now()`` counts from it) to the first animation frame at
which the dashboard is *rendered*, provided it stays rendered for the next 200 ms:

* as many chart holders (``.dashboard-component-chart-holder``) as the dashboard has charts;
* no loading spinner anywhere in the page (``.loading``: the page's, the filter bar's, a chart's);
* every holder's chart body (``.chart-container``, not its header, whose icons are svg) shows
  something: a canvas with at least one painted pixel (ECharts' first frame; its entry animation
  may still run), an svg with shapes, a table row, or an explicit empty state; a chart whose query
  failed shows an error alert instead and counts as drawn, but the run stops with its title.

Polled by ``page.wait_for_function`` at every animation frame (``requestAnimationFrame``). Playwright
sets ``navigator.webdriver``, which turns off Superset's dashboard virtualization, so every chart is
drawn, including those below the 1440x900 viewport (a person's browser would draw those on scroll).

Besides the load times, it prints where the time goes, from each load's Resource Timing entries of
its chart-data requests: when the native filters' option queries were answered (a filter that
selects its first value by default holds the charts back until then), when the first chart query
left the browser, when the last answer arrived; the CPU time Chromium's processes and Superset's
used during the load (/proc; the machine's load average is printed too, as other work on it
stretches wall time but hardly CPU time); and per chart, its request's time queued in the browser
(Chromium opens 6 connections per host) and at the server (sent to first byte).

Usage:
  .venv/bin/python bench/bench_dashboard_load.py [--events 10000000] [--loads 20] [--samples-snapshot PATH]
  .venv/bin/python bench/bench_dashboard_load.py --events 200000 --loads 3   # a quick try
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

# bench_superset puts the repository root on sys.path for the project's imports
from bench_superset import generated_snapshot, running_superset

from dashboards import service
from tests.integration.test_superset import CHROMIUM, CHROMIUM_ARGS, login

#: Seconds a load may take before the run stops with what was not drawn.
LOAD_TIMEOUT_S = 120
#: The target: p95 of each dashboard's load time (s).
TARGET_P95_S = 3.0

#: Called by wait_for_function at each animation frame; ``window.__loadBench`` keeps, per document,
#: the frame time (ms since navigation start) from which the dashboard has been rendered without a
#: break, and returns it once that has lasted ``stableMs``.
RENDERED = r"""
({expected, stableMs}) => {
  const state = window.__loadBench || (window.__loadBench = {since: null, painted: new WeakSet()});
  const now = performance.now();
  const painted = canvas => {
    if (state.painted.has(canvas)) return true;
    if (!canvas.width || !canvas.height) return false;
    const alpha = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < alpha.length; i += 4) {
      if (alpha[i] !== 0) { state.painted.add(canvas); return true; }
    }
    return false;
  };
  const failed = holder => holder.querySelector('[data-test="alert"], .ant-alert-error') !== null;
  const drawn = holder => {
    if (failed(holder)) return true;
    const body = holder.querySelector('.chart-container');
    if (body === null) return false;
    if (body.querySelector('[aria-label="empty"], .ant-empty, tbody tr')) return true;
    if ([...body.querySelectorAll('svg')].some(svg => svg.querySelector('path, rect, circle, line, text'))) return true;
    return [...body.querySelectorAll('canvas')].some(painted);
  };
  const holders = [...document.querySelectorAll('.dashboard-component-chart-holder')];
  const rendered = holders.length === expected && document.querySelector('.loading') === null && holders.every(drawn);
  if (!rendered) { state.since = null; return false; }
  if (state.since === null) state.since = now;
  if (now - state.since < stableMs) return false;
  return {
    renderedMs: state.since,
    failed: holders.filter(failed).map(h => h.querySelector('[data-test-chart-name]')?.dataset.testChartName || '?'),
  };
}
"""

#: What the page's Resource Timing says about its chart-data requests (ms since navigation start).
REQUESTS = r"""
() => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/api/v1/chart/data'))
  .map(e => ({url: e.name, start: e.startTime, sent: e.requestStart, firstByte: e.responseStart, end: e.responseEnd}))
"""

#: When nothing renders: what the page shows, for the error message.
PENDING = r"""
() => ({
  holders: document.querySelectorAll('.dashboard-component-chart-holder').length,
  spinners: document.querySelectorAll('.loading').length,
  undrawn: [...document.querySelectorAll('.dashboard-component-chart-holder')]
    .filter(h => !h.querySelector('.chart-container canvas, .chart-container tbody tr, .chart-container svg'))
    .map(h => h.querySelector('[data-test-chart-name]')?.dataset.testChartName || '?'),
})
"""


@dataclass(frozen=True, eq=False)  # a dict key by identity
class Dashboard:
    """A dashboard of the provisioned bundle: slug, title and its charts' titles by chart id."""

    slug: str
    title: str
    charts: dict[int, str]


@dataclass
class Load:
    """One measured load: rendered (s since navigation start), the CPU time (s) the browser's and
    Superset's processes spent from navigation until then, and the load's chart-data requests.

    ``requests``: per request, the chart id (None: a native filter's options query) and the
    Resource Timing marks ``start``, ``sent`` (request sent), ``firstByte``, ``end`` (ms).
    """

    rendered_s: float
    browser_cpu_s: float
    server_cpu_s: float
    requests: list[tuple[int | None, dict[str, float]]] = field(default_factory=list)


def _chart_id(url: str) -> int | None:
    """The ``slice_id`` in a chart-data URL's ``form_data`` parameter (None for a filter's query)."""
    try:
        form_data = json.loads(parse_qs(urlparse(url).query).get("form_data", ["{}"])[0])
    except json.JSONDecodeError:
        return None
    chart = form_data.get("slice_id") if isinstance(form_data, dict) else None
    return chart if isinstance(chart, int) else None


def dashboards(url: str, account: service.Admin) -> list[Dashboard]:
    """Every dashboard of the running Superset with its charts, in provisioning order."""
    session = login(url, account)
    listing = session.get("/api/v1/dashboard/", params={"q": "(columns:!(id,slug,dashboard_title),page_size:100)"})
    found = []
    for item in sorted(listing.json()["result"], key=lambda d: d["id"]):
        charts = session.get(f"/api/v1/dashboard/{item['id']}/charts").json()["result"]
        found.append(Dashboard(item["slug"], item["dashboard_title"], {c["id"]: c["slice_name"] for c in charts}))
    session.close()
    return found


def measure(
    url: str, account: service.Admin, server_pid: int, loads: int, viewport: tuple[int, int]
) -> dict[Dashboard, list[Load]]:
    """Per dashboard, ``loads`` measured loads in one warm Chromium page (after one warm-up load each).

    ``server_pid``: gunicorn's master, whose process tree's CPU time each load is charged.

    Raises:
        RuntimeError: a load did not render within LOAD_TIMEOUT_S, or a chart showed an error.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    boards = dashboards(url, account)
    results: dict[Dashboard, list[Load]] = {board: [] for board in boards}
    clock = os.sysconf("SC_CLK_TCK")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            _log_in(page, url, account)
            for round_ in range(loads + 1):  # round 0: the uncounted warm-up load of each dashboard
                for board in boards:
                    cpu_before = _cpu_ticks(_chromium()), _cpu_ticks(_descendants(server_pid))
                    page.goto(f"{url}/superset/dashboard/{board.slug}/", wait_until="commit")
                    try:
                        done = page.wait_for_function(
                            RENDERED,
                            arg={"expected": len(board.charts), "stableMs": 200},
                            polling="raf",
                            timeout=LOAD_TIMEOUT_S * 1000,
                        ).json_value()
                    except PlaywrightTimeout as exc:
                        pending = page.evaluate(PENDING)
                        raise RuntimeError(f"{board.slug} not rendered in {LOAD_TIMEOUT_S} s: {pending}") from exc
                    if done["failed"]:
                        raise RuntimeError(f"{board.slug}: charts show an error: {done['failed']}")
                    requests = [(_chart_id(r["url"]), r) for r in page.evaluate(REQUESTS)]
                    browser_ticks = _cpu_ticks(_chromium()) - cpu_before[0]
                    server_ticks = _cpu_ticks(_descendants(server_pid)) - cpu_before[1]
                    if round_:
                        results[board].append(
                            Load(done["renderedMs"] / 1000, browser_ticks / clock, server_ticks / clock, requests)
                        )
        finally:
            browser.close()
    return results


def _log_in(page: Any, url: str, account: service.Admin, attempts: int = 3) -> None:
    """Log ``page`` in through Superset's login form (again when a busy machine lost the first submit)."""
    for attempt in range(attempts):
        page.goto(f"{url}/login/")
        page.fill("#username, input[name=username]", account.username)
        page.fill("#password, input[name=password]", account.password)
        page.keyboard.press("Enter")
        try:
            page.wait_for_url(lambda address: "/login" not in address, timeout=30_000)
            return
        except Exception:
            if attempt == attempts - 1:
                raise


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):  # a child belongs to the thread that forked it
            try:
                queue.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _chromium() -> list[int]:
    """This run's Chromium processes (browser, renderers, GPU and network services): below this process."""
    return [pid for pid in _descendants(os.getpid()) if "chrom" in _comm(pid)]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return ""


def _cpu_ticks(pids: list[int]) -> int:
    """User + system CPU time of ``pids`` (clock ticks; processes gone meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``: p95 of 20 values is the 19th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(label: str, results: dict[Dashboard, list[Load]], load_average: tuple[float, float]) -> None:
    """Print the load-time table, where the time goes, and each chart's request times, for one snapshot."""
    loads = len(next(iter(results.values())))
    print(
        f"\n{label}: dashboard load time, navigation start to every chart drawn (s), {loads} warm loads each; "
        f"load average {load_average[0]:.1f} before, {load_average[1]:.1f} after"
    )
    print(f"{'dashboard':<24}{'charts':>7}{'p50':>8}{'p95':>8}{'max':>8}  p95 <= {TARGET_P95_S:g} s")
    for board, measured in results.items():
        times = [load.rendered_s for load in measured]
        p95 = percentile(times, 0.95)
        print(
            f"{board.slug:<24}{len(board.charts):>7}{statistics.median(times):>8.2f}{p95:>8.2f}{max(times):>8.2f}"
            f"  {'yes' if p95 <= TARGET_P95_S else 'NO'}"
        )

    print(
        f"\n{label}: where the time goes (medians over loads; marks in s since navigation start, from the chart-data "
        "requests' Resource Timing; CPU: s used by Chromium's processes and by Superset's during the load)"
    )
    print(
        f"{'dashboard':<24}{'filters answered':>17}{'1st chart query':>16}{'last answer':>12}{'drawn':>8}"
        f"{'CPU browser':>12}{'CPU Superset':>13}"
    )
    for board, measured in results.items():

        def median_of(pick: Any, of: list[Load] = measured) -> float:
            return statistics.median(pick(load) for load in of)

        def marks(load: Load, mark: str, charts: bool | None = None) -> list[float]:
            """A mark of the load's chart-data requests: of charts (True), of native filters (False), of all."""
            found = [t[mark] for cid, t in load.requests if charts is None or (cid is not None) == charts]
            return found or [math.nan]

        print(
            f"{board.slug:<24}{median_of(lambda load: max(marks(load, 'end', charts=False))) / 1000:>17.2f}"
            f"{median_of(lambda load: min(marks(load, 'start', charts=True))) / 1000:>16.2f}"
            f"{median_of(lambda load: max(marks(load, 'end'))) / 1000:>12.2f}"
            f"{median_of(lambda load: load.rendered_s):>8.2f}"
            f"{median_of(lambda load: load.browser_cpu_s):>12.2f}{median_of(lambda load: load.server_cpu_s):>13.2f}"
        )

    print(f"\n{label}: chart-data requests per chart (medians over loads, ms): queued in the browser, at the server")
    print(f"{'dashboard':<24}{'chart':<56}{'queued':>8}{'server':>8}{'total':>8}")
    for board, measured in results.items():
        for chart_id, title in [(None, "(native filters' option queries)"), *board.charts.items()]:
            timings = [t for load in measured for cid, t in load.requests if cid == chart_id]
            if not timings:
                continue
            queued = statistics.median(t["sent"] - t["start"] for t in timings)
            server = statistics.median(t["firstByte"] - t["sent"] for t in timings)
            total = statistics.median(t["end"] - t["start"] for t in timings)
            print(f"{board.slug:<24}{title[:55]:<56}{queued:>8.0f}{server:>8.0f}{total:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="generated silver events (0: skip)")
    parser.add_argument("--loads", type=int, default=20, help="measured loads per dashboard (after 1 warm-up)")
    parser.add_argument("--samples-snapshot", type=Path, help="also measure this snapshot (e.g. `make demo`'s)")
    parser.add_argument("--viewport", default="1440x900", help="browser viewport, WIDTHxHEIGHT (px)")
    args = parser.parse_args()
    viewport = tuple(int(v) for v in args.viewport.split("x"))
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: `make packages` installs Debian's chromium")
    os.environ.pop("SUPERSET_ADMIN_USER", None)
    with tempfile.TemporaryDirectory() as tmp:
        snapshots = []
        if args.samples_snapshot:
            snapshots.append(("samples", args.samples_snapshot))
        if args.events:
            started = time.perf_counter()
            snapshots.append((f"{args.events:,} events", generated_snapshot(args.events, Path(tmp))))
            print(f"generated gold + snapshot from {args.events:,} events in {time.perf_counter() - started:.0f} s")
        for label, snapshot in snapshots:
            with running_superset(snapshot) as (url, account, server):
                before = os.getloadavg()[0]
                results = measure(url, account, server.pid, args.loads, (viewport[0], viewport[1]))
                report(label, results, (before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
