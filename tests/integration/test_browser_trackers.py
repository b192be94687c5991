"""posthog-js and Snowplow's browser tracker, unmodified from npm, in Debian's Chromium against the real API.

The trackers' own browser bundles (``tests/browser/package.json``, installed by ``make install``) are
served with a page from a second local origin, so every request is a real cross-origin one (CORS,
Snowplow's credentials included). The events then go through silver: each lands exactly once with
the user the page set, also when the first request of each tracker was committed but its answer
lost (the SDKs send it again).
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ApiServer, Env, free_port, materialize_all
from warehouse.lake.tables import EVENTS, RAW_EVENTS

CHROMIUM = Path("/usr/bin/chromium")
BUNDLES = Path(__file__).resolve().parents[1] / "browser" / "node_modules"
POSTHOG_JS = BUNDLES / "posthog-js" / "dist" / "array.full.js"
SNOWPLOW_JS = BUNDLES / "@snowplow" / "browser-tracker" / "dist" / "index.umd.min.js"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is installed by make packages (apt-get)"),
    pytest.mark.skipif(not POSTHOG_JS.exists(), reason="the trackers' bundles are installed by `make install` (npm)"),
]


def page_html(api: ApiServer) -> str:
    """A shop page that sets a user in each tracker and sends a few events, as a site would."""
    posthog_config = {
        "api_host": api.url,
        "persistence": "memory",
        "disable_session_recording": True,
        # posthog-js drops a headless browser's events as a bot's; its own advice for end-to-end tests.
        "opt_out_useragent_filter": True,
    }
    return f"""<!doctype html>
<html><head><title>shop</title><script src="posthog.js"></script><script src="snowplow.js"></script></head>
<body><button id="buy">Buy</button><script>
posthog.init({json.dumps(api.key)}, {json.dumps(posthog_config)});
posthog.identify("ph-user-42");
posthog.capture("clicked_buy", {{component: "buy"}});
snowplowBrowserTracking.newTracker("sp", {json.dumps(f"{api.url}/{api.key}")},
  {{appId: "shop", eventMethod: "post", bufferSize: 1, stateStorageStrategy: "none"}});
snowplowBrowserTracking.setUserId("sp-user-7");
snowplowBrowserTracking.trackPageView();
snowplowBrowserTracking.trackStructEvent({{category: "shop", action: "buy", label: "cart"}});
</script></body></html>"""


@pytest.fixture
def site(api: ApiServer, tmp_path: Path) -> Iterator[str]:
    """The page and the two bundles on their own origin (another port of 127.0.0.1)."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(POSTHOG_JS, root / "posthog.js")
    shutil.copy(SNOWPLOW_JS, root / "snowplow.js")
    (root / "index.html").write_text(page_html(api))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site without an access log line per file on stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        return


def bronze(env: Env) -> pl.DataFrame:
    if env.lake.version(RAW_EVENTS) is None:
        return pl.DataFrame(schema={"event_id": pl.String, "source_format": pl.String})
    frame = pl.from_arrow(env.lake.dataset(RAW_EVENTS).to_table(columns=["event_id", "source_format"]))
    assert isinstance(frame, pl.DataFrame)
    return frame


def run_page(site: str, env: Env, until: Callable[[pl.DataFrame], bool], lose_first_answers: bool = False) -> None:
    """Open the page in Chromium and keep it open until bronze satisfies ``until`` (60 s at most).

    ``lose_first_answers``: the first capture request of each tracker reaches the API (and is
    committed) but the browser gets a network error instead of its answer, so the SDK sends it again.
    """
    from playwright.sync_api import Route, sync_playwright  # noqa: PLC0415 (only the browser tests need it)

    lost: set[str] = set()

    def lose_first(route: Route) -> None:
        tracker = "snowplow" if "/com.snowplowanalytics.snowplow/" in route.request.url else "posthog"
        if tracker in lost:
            route.continue_()
            return
        lost.add(tracker)
        route.fetch()  # the API commits the events and answers; the browser never sees the answer
        route.abort("failed")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            if lose_first_answers:
                page.route(lambda url: "/e/" in url or "/com.snowplowanalytics.snowplow/tp2" in url, lose_first)
            page.goto(site)
            deadline = time.monotonic() + 60
            while not until(bronze(env)):
                assert time.monotonic() < deadline, f"bronze after 60 s: {bronze(env)}"
                # What makes each tracker send what it holds: posthog-js flushes its queue every 3 s,
                # Snowplow's queue is sent again when asked.
                page.evaluate("snowplowBrowserTracking.flushBuffer()")
                page.wait_for_timeout(500)
            assert lost == ({"posthog", "snowplow"} if lose_first_answers else set())
        finally:
            browser.close()


def tracked(frame: pl.DataFrame) -> bool:
    """Both trackers' events are there: PostHog's pageview, identify and click; Snowplow's page view and
    structured event."""
    counts = frame.group_by("source_format").agg(pl.col("event_id").n_unique())
    found = dict(zip(counts["source_format"], counts["event_id"], strict=True))
    return found.get("posthog", 0) >= 3 and found.get("snowplow", 0) >= 2


def silver_rows(env: Env) -> pl.DataFrame:
    assert materialize_all(env).success
    frame = pl.from_arrow(
        env.lake.dataset(EVENTS).to_table(columns=["event_id", "event_type", "source_format", "user_id", "app"])
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def assert_each_event_once_with_its_user(rows: pl.DataFrame) -> None:
    assert rows["event_id"].n_unique() == rows.height
    posthog = rows.filter(pl.col("source_format") == "posthog")
    assert sorted(posthog["event_type"]) == ["clicked_buy", "identify", "page_view"]
    # The click came after identify(): it carries the identified user, as in PostHog.
    assert posthog.filter(pl.col("event_type") == "clicked_buy")["user_id"].to_list() == ["ph-user-42"]
    assert posthog.filter(pl.col("event_type") == "identify")["user_id"].to_list() == ["ph-user-42"]
    snowplow = rows.filter(pl.col("source_format") == "snowplow")
    assert sorted(snowplow["event_type"]) == ["buy", "page_view"]  # a structured event is its action
    assert set(snowplow["user_id"]) == {"sp-user-7"} and set(snowplow["app"]) == {"shop"}


def test_posthog_js_and_the_snowplow_browser_tracker_land_once_with_their_users(site: str, env: Env) -> None:
    run_page(site, env, tracked)

    assert_each_event_once_with_its_user(silver_rows(env))


def test_events_sent_again_after_a_lost_answer_land_once(site: str, env: Env) -> None:
    def sent_again(frame: pl.DataFrame) -> bool:
        # Each tracker's first request is in bronze twice: once as committed, once as sent again.
        return tracked(frame) and all(
            frame.filter(pl.col("source_format") == f).height
            > frame.filter(pl.col("source_format") == f)["event_id"].n_unique()
            for f in ("posthog", "snowplow")
        )

    run_page(site, env, sent_again, lose_first_answers=True)

    assert_each_event_once_with_its_user(silver_rows(env))
