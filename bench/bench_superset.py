"""Chart-data latency through Superset's API on the serving snapshot: p50/p95 per chart.

For each snapshot (the bundled samples, and gold built from N generated events) and each
results-cache setting (off = the project default, on = EVENTLAKE_SUPERSET_CACHE=simple), starts a
real Superset from .venv-superset on a free loopback port, provisions the bundle against that
snapshot and requests every chart's /api/v1/chart/<id>/data/ --repeat times after one uncounted warm-up request,
printing one table. Its generated snapshot and running Superset are shared with
bench/bench_dashboard_load.py (dashboard load time in a browser).

Usage:
  .venv/bin/python bench/bench_superset.py --samples-snapshot data/serving/serving.duckdb --events 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dashboards import service  # noqa: E402
from pipelines.data_quality import refresh_data_quality  # noqa: E402
from pipelines.defs.gold import dependency_order  # noqa: E402
from pipelines.gold import refresh_mart  # noqa: E402
from pipelines.gold_rebuild import refresh_rebuilt  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.test_superset import login  # noqa: E402
from warehouse import gold  # noqa: E402
from warehouse.lake.store import Lake  # noqa: E402
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS, TableDef  # noqa: E402
from warehouse.marts import catalog  # noqa: E402
from warehouse.serving import pipeline_freshness, publish_snapshot  # noqa: E402

#: Generated apps; the first is the app of the shipped ``shop_checkout`` funnel (warehouse/funnels.yaml).
APPS = ("onlineshop_2019", "blog", "docs")
PEOPLE = 200_000
#: The shop_checkout funnel's steps in order (its product step also matches product2).
CHECKOUT = ("catalog", "product1", "cart", "delivery_choice", "payment_choice", "payment_done")
#: Event kinds besides a checkout visit's steps, with their shares of events.
KINDS = ("page_view", "click", "form_field", "form_submit", "errors", *(f"action_{i}" for i in range(10)))
KIND_SHARES = (0.55, 0.15, 0.06, 0.01, 0.01, *([0.022] * 10))
COMPONENTS = (
    "nav_menu",
    "search_box",
    "hero_cta",
    "add_to_cart",
    "filter_panel",
    "sort_select",
    "pagination",
    "newsletter_form",
    "cookie_banner",
    "footer_link",
    "share_button",
    "video_player",
)
FORMS = {"signup": ("email", "password", "name", "plan"), "checkout": ("address", "city", "zip", "card", "confirm")}
FORM_STEPS = max(len(fields) for fields in FORMS.values())
ERRORS = (
    {"type": "TypeError", "message": "Cannot read properties of undefined (reading 'id')"},
    {"type": "NetworkError", "message": "Failed to fetch /api/cart (status 502)"},
    {"type": "RangeError", "message": "Maximum call stack size exceeded"},
    {"type": "SyntaxError", "message": "Unexpected token '<' in JSON at position 0"},
    {"type": "ChunkLoadError", "message": "Loading chunk 42 failed"},
)
#: Client countries (None: unknown, e.g. a private address) and their shares of people.
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "NL", "AU", None)
COUNTRY_SHARES = (0.3, 0.12, 0.1, 0.08, 0.08, 0.06, 0.05, 0.05, 0.04, 0.04, 0.08)
#: Per platform: its share of people, then (device_type, browser_family, os_family) choices.
PLATFORMS = {
    "web": (
        0.7,
        (
            ("desktop", "Chrome", "Windows"),
            ("desktop", "Firefox", "Linux"),
            ("desktop", "Safari", "Mac OS X"),
            ("tablet", "Chrome", "Android"),
        ),
    ),
    "ios": (0.15, (("smartphone", "Mobile Safari", "iOS"), ("tablet", "Mobile Safari", "iOS"))),
    "android": (0.15, (("smartphone", "Chrome Mobile", "Android"),)),
}
ASSET_EXTENSIONS = ("css", "js", "png", "svg", "ico")


def _json_strings(values: Iterable[Mapping[str, object]]) -> np.ndarray:
    return np.array([json.dumps(value) for value in values], dtype=object)


class _People:
    """Per-person attributes, fixed for the whole generation: country (and its source), platform,
    device type, browser and OS family (one combination per person)."""

    def __init__(self, rng: np.random.Generator) -> None:
        combos = [(platform, *combo) for platform, (_, choices) in PLATFORMS.items() for combo in choices]
        shares = [PLATFORMS[platform][0] / len(PLATFORMS[platform][1]) for platform, *_ in combos]
        self.combos = np.array(combos, dtype=object)  # (platform, device_type, browser_family, os_family)
        self.combo = rng.choice(len(combos), PEOPLE, p=shares)
        country = rng.choice(len(COUNTRIES), PEOPLE, p=COUNTRY_SHARES)
        self.country = np.array(COUNTRIES, dtype=object)[country]
        located = rng.random(PEOPLE) < 0.1  # 10 % of clients send a location; the rest come from the IP
        self.country_source = np.array(["ip", "location"], dtype=object)[located.astype(int)]
        self.country_source[np.array([c is None for c in COUNTRIES])[country]] = None  # no country, no source


def _silver_rows(rng: np.random.Generator, people: _People, offset: int, n: int) -> pa.Table:
    """``n`` silver rows in visits (about 8 events, 40 s apart, one app and person each) over 2025.

    30 % of shop visits go down the checkout funnel (each step reached with probability 0.65);
    other events are page views (5 % of them requests of static assets), clicks on components,
    form fields (a visit's in its form's order) and submits, errors and custom actions
    (:data:`KIND_SHARES`); 5 % are bots. People keep one country (and its source) and platform.
    """
    lengths = rng.geometric(1 / 8, n // 2 + 1)
    ends = np.cumsum(lengths)
    visits = int(np.searchsorted(ends, n)) + 1
    lengths, ends = lengths[:visits], ends[:visits]
    lengths[-1] -= ends[-1] - n
    visit = np.repeat(np.arange(visits), lengths)
    position = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    person = rng.integers(0, PEOPLE, visits)[visit]
    app = rng.integers(0, len(APPS), visits)[visit]
    seconds = rng.integers(0, 365 * 86400, visits)[visit] + position * 40 + rng.integers(0, 40, n)
    timestamps = pa.array(
        (np.datetime64("2025-01-01T00:00:00") + seconds.astype("timedelta64[s]")).astype("datetime64[us]"),
        pa.timestamp("us", tz="UTC"),
    )

    kind = np.array(KINDS, dtype=object)[rng.choice(len(KINDS), n, p=KIND_SHARES)]
    checkout_depth = np.where(
        (app == 0) & (rng.random(visits)[visit] < 0.3), np.minimum(rng.geometric(0.35, visits), len(CHECKOUT))[visit], 0
    )
    in_checkout = position < checkout_depth
    steps = np.array(CHECKOUT, dtype=object)[np.minimum(position, len(CHECKOUT) - 1)]
    steps[(steps == "product1") & (rng.random(n) < 0.5)] = "product2"
    event_type = np.where(in_checkout, steps, kind)

    properties = np.full(n, "{}", dtype=object)
    clicks = event_type == "click"
    properties[clicks] = _json_strings([{"component": c} for c in COMPONENTS])[
        rng.integers(0, len(COMPONENTS), int(clicks.sum()))
    ]
    form = rng.integers(0, len(FORMS), visits)[visit]  # one form per visit
    fields = event_type == "form_field"
    field_texts = _json_strings(
        [
            {"form": name, "field": names[min(step, len(names) - 1)], "step": min(step, len(names) - 1) + 1}
            for name, names in FORMS.items()
            for step in range(FORM_STEPS)
        ]
    )
    # a visit fills its form's fields in order: its k-th field event is the form's k-th field
    fields_before = np.cumsum(fields) - fields
    step = np.minimum(fields_before - fields_before[np.cumsum(lengths) - lengths][visit], FORM_STEPS - 1)
    properties[fields] = field_texts[(form * FORM_STEPS + step)[fields]]
    submits = event_type == "form_submit"
    properties[submits] = _json_strings([{"form": name} for name in FORMS])[form[submits]]
    errors = event_type == "errors"
    properties[errors] = _json_strings(ERRORS)[rng.integers(0, len(ERRORS), int(errors.sum()))]

    app_names = np.array(APPS, dtype=object)[app]
    base = np.char.add(np.char.add("https://", app_names.astype(str)), ".example.com/")
    page_urls = np.char.add(np.char.add(base, "p/"), rng.integers(0, 2_000, n).astype(str))
    is_asset = (event_type == "page_view") & (rng.random(n) < 0.05)
    assets = np.char.add(
        np.char.add(np.char.add(base, "static/file"), rng.integers(0, 50, n).astype(str)),
        np.char.add(".", np.array(ASSET_EXTENSIONS)[rng.integers(0, len(ASSET_EXTENSIONS), n)]),
    )
    page_urls = np.where(is_asset, assets, page_urls)
    combo = people.combos[people.combo[person]]
    columns = {
        "event_id": pa.array([f"g{offset + i}" for i in range(n)]),
        "event_type": pa.array(event_type, pa.string()),
        "app": pa.array(app_names, pa.string()),
        "source": pa.array(["web"] * n),
        "source_format": pa.array(["native"] * n),
        "timestamp": timestamps,
        "event_date": pa.compute.cast(timestamps, pa.date32()),
        "received_at": timestamps,
        "user_id": pa.array(np.char.add("u", person.astype(str))),
        "page_url": pa.array(page_urls),
        "properties": pa.array(properties, pa.string()),
        "platform": pa.array(combo[:, 0], pa.string()),
        "device_type": pa.array(combo[:, 1], pa.string()),
        "browser_family": pa.array(combo[:, 2], pa.string()),
        "os_family": pa.array(combo[:, 3], pa.string()),
        "country": pa.array(people.country[person], pa.string()),
        "country_source": pa.array(people.country_source[person], pa.string()),
        "is_asset": pa.array(is_asset),
        "is_bot": pa.array(rng.random(n) < 0.05),
        "bronze_version": pa.array(np.zeros(n, dtype=np.int64)),
    }
    return _table(EVENTS, columns, n)


def _quarantined_rows(rng: np.random.Generator, offset: int, n: int) -> pa.Table:
    """``n`` quarantine rows received over 2025, spread over three failed checks."""
    reasons = np.array(
        [
            ("timestamp_after_2000", "timestamp_out_of_range"),
            ("user_or_session_present", "schema_violation"),
            ("event_size", "size_violation"),
        ],
        dtype=object,
    )[rng.integers(0, 3, n)]
    received = pa.array(
        (np.datetime64("2025-01-01T00:00:00") + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")).astype(
            "datetime64[us]"
        ),
        pa.timestamp("us", tz="UTC"),
    )
    columns = {
        "event_id": pa.array([f"q{offset + i}" for i in range(n)]),
        "event_type": pa.array(["page_view"] * n),
        "app": pa.array(np.array(APPS, dtype=object)[rng.integers(0, len(APPS), n)], pa.string()),
        "source": pa.array(["web"] * n),
        "source_format": pa.array(["native"] * n),
        "received_at": received,
        "received_date": pa.compute.cast(received, pa.date32()),
        "payload": pa.array(["{}"] * n),
        "suite": pa.array(["raw_events"] * n),
        "failed_expectations": pa.array([json.dumps([{"check": r}]) for r in reasons[:, 0]]),
        "reason": pa.array(reasons[:, 0], pa.string()),
        "reason_type": pa.array(reasons[:, 1], pa.string()),
        "bronze_version": pa.array(np.zeros(n, dtype=np.int64)),
        "quarantined_at": received,
    }
    return _table(REJECTED_EVENTS, columns, n)


def _table(table: TableDef, columns: dict[str, pa.Array], n: int) -> pa.Table:
    """``columns`` in ``table``'s schema, every column not given null."""
    return pa.table(
        {
            name: columns.get(name, pa.nulls(n, field.type))
            for name, field in zip(table.schema.names, table.schema, strict=True)
        },
        schema=table.schema,
    )


def generated_snapshot(events: int, folder: Path, chunk: int = 1_000_000) -> Path:
    """Gold + snapshot from ``events`` synthetic silver rows (:func:`_silver_rows`: 3 apps, 365 days,
    200k people in visits, checkout funnel, forms, components, errors, 22 event types incl. the
    funnel's, 2,000 pages, 5 % of page views asset requests, 10 countries, 3 platforms, 5 % bots)
    plus one quarantined event per 20,000 (written straight to silver and quarantine; gold built by
    the pipeline's code). Returns the snapshot's path under ``folder``."""
    lake = Lake(str(folder / "lake"))
    rng = np.random.default_rng(7)
    people = _People(rng)
    for offset in range(0, events, chunk):
        n = min(chunk, events - offset)
        lake.append(EVENTS, _silver_rows(rng, people, offset, n))
        lake.append(REJECTED_EVENTS, _quarantined_rows(rng, offset, max(1, n // 20_000)))
    con = gold.connect(folder / "warehouse.duckdb")
    marts = catalog()
    for mart in dependency_order(marts):  # as the gold step does: the marts a mart reads first
        if mart.spec.kind == "incremental":
            refresh_mart(con, lake, mart.name)
        elif mart.spec.kind == "rebuild":
            refresh_rebuilt(con, mart, upstream_changed=True)
    refresh_data_quality(con, lake, marts["data_quality_daily"])
    target = folder / "serving" / "serving.duckdb"
    publish_snapshot(con, target, marts, {"pipeline_freshness": pipeline_freshness(con, lake)})
    con.close()
    return target


@contextmanager
def running_superset(
    snapshot: Path, cache: str = "", gunicorn: dict[str, str] | None = None
) -> Iterator[tuple[str, service.Admin, subprocess.Popen[bytes]]]:
    """A real Superset from .venv-superset on a free loopback port, in a fresh data folder, with
    the bundle provisioned against ``snapshot``; yields its URL, admin account and gunicorn's master
    process, and stops it after.

    ``cache``: ``EVENTLAKE_SUPERSET_CACHE`` ("" = results cache off, the project default; "simple");
    ``gunicorn``: options of ``service.start_args`` to change, e.g. ``{"--workers": "2"}`` (an experiment).
    """
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = {**service.environment(data_dir), "EVENTLAKE_SUPERSET_CACHE": cache}
        account = service.admin(data_dir)
        log = data_dir / "superset.log"
        service.initialize(env, account, log)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = service.start_args(port)
        for option, value in (gunicorn or {}).items():
            args[args.index(option) + 1] = value
        proc = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            service.wait_healthy(url, 180, proc)
            service.provision(env, account, url, snapshot, log)
            yield url, account, proc
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def measure(snapshot: Path, cache: str, repeat: int) -> dict[str, list[float]]:
    """Per chart title, ``repeat`` timings (ms) of ``GET /api/v1/chart/<id>/data/`` after one uncounted warm-up."""
    with running_superset(snapshot, cache) as (url, account, _):
        session = login(url, account)
        charts = session.get("/api/v1/chart/", params={"q": "(columns:!(id,slice_name),page_size:100)"})
        timings: dict[str, list[float]] = {}
        for chart in charts.json()["result"]:
            session.get(f"/api/v1/chart/{chart['id']}/data/")  # warm-up, not counted (first query opens the file)
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = session.get(f"/api/v1/chart/{chart['id']}/data/")
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text[:300]
            timings[chart["slice_name"]] = samples
        return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples-snapshot", type=Path, default=Path("data/serving/serving.duckdb"))
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    os.environ.pop("SUPERSET_ADMIN_USER", None)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generated = generated_snapshot(args.events, Path(tmp))
        build_s = time.perf_counter() - started
        runs = {}
        for label, snapshot in (("samples", args.samples_snapshot), (f"{args.events:,} events", generated)):
            for cache in ("", "simple"):
                runs[(label, "off" if not cache else "on")] = measure(snapshot, cache, args.repeat)
    print(
        f"chart data latency through Superset's API, {args.repeat} requests per chart (ms); "
        f"generated gold + snapshot built in {build_s:.0f} s"
    )
    charts = list(next(iter(runs.values())))
    header = "".join(f"{f'{label} cache {cache}':>34}" for label, cache in runs)
    print(f"{'chart':<48}{header}")
    print(f"{'':<48}" + "".join(f"{'p50':>17}{'p95':>17}" for _ in runs))
    for chart in charts:
        cells = ""
        for timings in runs.values():
            values = sorted(timings[chart])
            cells += f"{statistics.median(values):>17.1f}{values[int(len(values) * 0.95) - 1]:>17.1f}"
        print(f"{chart[:47]:<48}{cells}")


if __name__ == "__main__":
    main()
