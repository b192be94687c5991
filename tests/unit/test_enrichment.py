"""Device, platform, country and asset enrichment: the rules one by one, then through build_silver."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import polars as pl
import pyarrow as pa
import pytest

from pipelines import transform
from pipelines.enrichment import device_from_user_agent, is_asset_request, platform_from_context
from pipelines.geo import countries_of_networks, country_from_location
from pipelines.validation import FAILED_CHECKS, failed_checks, load_suite, split_rows, suite_path
from tests.unit.test_transform import NO_PRIOR, NO_TYPES, bronze

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)
ELECTRON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Notion/3.1.0 Chrome/120.0.6099.56 Electron/28.0.0 Safari/537.36"
)
IOS_APP = "Shop/5.2 (iPhone; iOS 17.2; Scale/3.00)"


@pytest.mark.parametrize(
    ("user_agent", "device_type", "platform"),
    [
        (IPHONE_SAFARI, "smartphone", "web"),  # a phone's browser is the web platform
        (IPAD_SAFARI, "tablet", "web"),
        (ANDROID_CHROME, "smartphone", "web"),
        (WINDOWS_CHROME, "desktop", "web"),
        (ELECTRON_MAC, "desktop", "desktop"),  # a native (Electron) app on a desktop OS
        (IOS_APP, "smartphone", "ios"),  # a native iOS app's own agent
        ("python-requests/2.31", None, "server"),  # an HTTP library off mobile
        ("okhttp/4.12.0", None, "android"),  # Android apps' HTTP library
        ("eventlake-replay/0.1", None, None),  # says nothing about where it runs
    ],
)
def test_device_type_and_platform_from_user_agent(user_agent: str, device_type: str | None, platform: str) -> None:
    device = device_from_user_agent(user_agent)
    assert (device.device_type, device.platform) == (device_type, platform)


def test_no_user_agent_or_a_hostile_one_says_nothing() -> None:
    for agent in (None, "Mozilla/5.0 (Linux; Android 13; " + "1" * 30_000 + ") Chrome/1"):  # took 75 s to parse
        device = device_from_user_agent(agent)
        assert device.device_type is None and device.platform is None and device.is_bot is False


@pytest.mark.parametrize(
    ("context", "platform"),
    [
        ('{"library": {"name": "analytics-ios", "version": "4.1"}}', "ios"),
        ('{"library": {"name": "analytics-kotlin"}}', "android"),
        ('{"library": {"name": "analytics.js"}, "os": {"name": "iOS"}}', "web"),  # the library decides first
        ('{"library": {"name": "analytics-python"}}', "server"),
        ('{"library": {"name": "posthog-node"}}', "server"),
        ('{"library": {"name": "analytics-react-native"}, "os": {"name": "Android"}}', "android"),  # by its OS
        ('{"device": {"type": "ios"}}', "ios"),
        ('{"os": {"name": "iPadOS"}}', "ios"),
        ('{"library": {"name": "analytics-swift"}, "os": {"name": "macOS"}, "app": {"name": "Notes"}}', "desktop"),
        ('{"os": {"name": "Windows"}, "app": {"name": "Studio"}}', "desktop"),
        ('{"os": {"name": "Windows"}}', None),  # a desktop OS without an app: could be a browser
        ('{"library": {"name": 7}, "device": "ios"}', None),  # wrong types name nothing
        ('{"locale": "de-DE"}', None),
        ("[1, 2]", None),
        ("not json", None),
        (None, None),
    ],
)
def test_platform_from_context(context: str | None, platform: str | None) -> None:
    assert platform_from_context(context) == platform


@pytest.mark.parametrize(
    ("location", "country"),
    [
        ("Berlin, Germany", "DE"),
        ("Berlin, DE", None),  # DE is Delaware too: a two-letter US state code in free text names none
        ("San Francisco, CA", None),
        ("London, UK", "GB"),  # everyday names ISO lacks
        ("Seoul, South Korea", "KR"),
        ("Main St 5, 250", None),  # numeric ISO codes are never read from text
        ("Lyon, France", "FR"),
        ("Osaka, Japan", "JP"),
        ("Springfield, IL, USA", "US"),  # alpha-3, last part
        ('{"city": "San Francisco", "country": "United States"}', "US"),  # Segment's context.location
        ('{"countryCode": "nz"}', "NZ"),
        ('{"country_code": "DE"}', "DE"),  # a structured code is a country code
        ('{"country": "Atlantis", "country_code": "CA"}', "CA"),  # the first key that names a country
        ("Berlin", None),  # a city alone is not guessed
        ("Paris, Texas, 75460", None),
        ('{"country": 49}', None),
        ("{broken", None),
        ("", None),
        (None, None),
    ],
)
def test_country_from_location(location: str | None, country: str | None) -> None:
    assert country_from_location(location) == country


def silver_rows(payloads: list[dict], received_at: datetime) -> tuple[pa.Table, dict[str, dict]]:
    """Native ``payloads`` through silver's steps (decode, validation, build_silver): the silver
    table and its rows by the payload's ``uuid``."""
    decoded = transform.decode(bronze([(payload, received_at, 1) for payload in payloads]))
    decoded, _ = transform.with_consistency(decoded, NO_PRIOR, NO_TYPES)
    suite = load_suite(suite_path("raw_events"))
    split = split_rows(failed_checks(transform.validation_frame(decoded), suite)[FAILED_CHECKS], suite)
    valid, _, _ = transform.apply_split(decoded, split)
    silver = transform.build_silver(valid, "run-1")
    uuid_of = {row["event_id"]: orjson.loads(row["payload"])["uuid"] for row in decoded.to_dicts()}
    return silver, {uuid_of[r["event_id"]]: r for r in silver.to_pylist()}


def test_silver_rows_carry_platform_device_type_and_country() -> None:
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    base = {"timestamp": "2024-05-01T10:00:00Z", "user": "u1"}
    payloads = [
        # an iOS app that sends a browser's agent (a web view): the SDK context wins
        {**base, "uuid": "a", "userAgent": IPHONE_SAFARI, "context": {"library": {"name": "analytics-swift"}}},
        {**base, "uuid": "b", "userAgent": ANDROID_CHROME, "location": "Lyon, France"},
        {**base, "uuid": "c", "userAgent": WINDOWS_CHROME, "location": {"countryCode": "DE", "city": "Berlin"}},
        {**base, "uuid": "d", "location": "jane@example.com, Berlin"},  # no country; the email is scrubbed
    ]
    silver, rows = silver_rows(payloads, t0)
    assert {k: (r["platform"], r["device_type"], r["country"]) for k, r in rows.items()} == {
        "a": ("ios", "smartphone", None),
        "b": ("web", "smartphone", "FR"),
        "c": ("web", "desktop", "DE"),
        "d": (None, None, None),  # the bronze helper's request agent, a bare "Mozilla/5.0", says nothing
    }
    assert "jane@example.com" not in rows["d"]["location"]


@pytest.mark.parametrize(
    ("network", "country"),
    [
        # Well-known allocations (the RIRs' delegation files; the operators' own pages):
        ("8.8.8.0", "US"),  # Google Public DNS, ARIN
        ("193.0.14.0", "NL"),  # k.root-servers.net, RIPE NCC
        ("202.12.27.0", "JP"),  # m.root-servers.net, WIDE, APNIC
        ("200.160.0.0", "BR"),  # NIC.br, LACNIC
        ("196.216.2.0", "ZA"),  # AFRINIC's services network, registered in South Africa (GeoLite2 agrees)
        ("2001:4860::", "US"),  # Google's IPv6 /32, ARIN (a /48 as silver keeps it)
        ("::ffff:8.8.8.0", "US"),  # IPv4-mapped IPv6, as silver truncates it
        ("8.8.8.8", "US"),  # a full address works the same
        # Private, shared, loopback, link-local, documentation and unique-local: nobody's country
        ("10.0.0.0", None),
        ("172.16.5.0", None),
        ("192.168.1.0", None),
        ("100.64.0.0", None),
        ("127.0.0.0", None),
        ("169.254.0.0", None),
        ("192.0.2.0", None),
        ("198.51.100.0", None),
        ("203.0.113.0", None),
        ("2001:db8:1::", None),
        ("fd12:3456:789a::", None),
        ("fe80::", None),
        ("::ffff:10.0.0.0", None),
        ("224.0.0.0", None),  # multicast
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_country_from_ip(network: str | None, country: str | None) -> None:
    assert countries_of_networks([network or ""]) == [country]


@pytest.mark.parametrize(
    ("url", "content_type", "asset"),
    [
        ("https://shop.example/static/app.css", None, True),
        ("https://shop.example/favicon.ico", None, True),
        ("https://shop.example/img/Logo.PNG?v=3#x", None, True),  # case, query and fragment ignored
        ("/fonts/inter.woff2", None, True),  # a path alone (access logs)
        ("https://shop.example/robots.txt", None, True),
        ("https://shop.example/products/42", None, False),
        ("https://shop.example/", None, False),
        ("https://shop.example/report.pdf", None, False),  # a document a person opens
        ("https://shop.example/index.php?page=a.css", None, False),  # the path decides, not the query
        ("https://shop.example/v1.2/", None, False),
        ("https://shop.example/app%2Ecss", None, True),  # regression: percent-encoded dot
        ("https://shop.example/app.css;jsessionid=0A1B", None, True),  # regression: path parameters
        ("https://shop.example/cart;jsessionid=0A1B", None, False),
        ("https://shop.example/a%2Fb.css/", None, False),  # the last segment is empty: a page
        ("https://shop.example/products/42", "image/png", True),  # a known content type decides
        ("https://shop.example/logo.png", "text/html; charset=utf-8", False),
        ("http://[::1", None, False),  # no URL: a page
        (None, None, False),
        # A content_type that is no media type says nothing: the URL decides
        ("https://blog.example/posts/hello", "article", False),
        ("https://blog.example/posts/hello", "5", False),
        ("https://blog.example/posts/hello", "text/html,application/xhtml+xml", False),
        ("https://blog.example/app.css", "article", True),
    ],
)
def test_is_asset_request(url: str | None, content_type: str | None, asset: bool) -> None:
    assert is_asset_request(url, content_type) is asset


def test_an_sdks_page_view_is_a_page_whatever_its_extension() -> None:
    assert is_asset_request("https://github.com/vercel/next.js", None, by_sdk=True) is False
    assert is_asset_request("https://github.com/vercel/next.js", None, by_sdk=False) is True  # an access log's
    assert is_asset_request("https://cdn.example/x", "image/png", by_sdk=True) is True  # a media type still decides


def test_silver_rows_carry_asset_flag_and_ip_country_with_its_source() -> None:
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    base = {"timestamp": "2024-05-01T10:00:00Z", "user": "u1"}
    payloads = [
        {**base, "uuid": "a", "ip": "193.0.14.129", "page": "https://shop.example/cart"},  # RIPE NCC: NL
        {**base, "uuid": "b", "ip": "193.0.14.129", "location": "Lyon, France"},  # the client's location wins
        {**base, "uuid": "c", "ip": "10.1.2.3", "page": "https://shop.example/app.css"},  # private: unknown
        {**base, "uuid": "d", "page": "https://shop.example/logo.png", "events": {"click": {}}},  # not a request
        {
            **base,
            "uuid": "e",
            "page": "https://shop.example/p/1",
            "events": {"page_view": {"content_type": "font/woff2"}},
        },
        # A server-side SDK: its address is its data centre's, no country from it
        {**base, "uuid": "f", "ip": "8.8.8.8", "context": {"library": {"name": "analytics-python"}}},
        # An SDK's page named like a script is a page; a content_type that is no media type says nothing
        {**base, "uuid": "g", "page": "https://docs.example/node.js", "context": {"library": {"name": "analytics.js"}}},
        {**base, "uuid": "h", "page": "https://blog.example/a", "events": {"page_view": {"content_type": "article"}}},
    ]
    silver, rows = silver_rows(payloads, t0)
    assert {k: (r["country"], r["country_source"], r["is_asset"]) for k, r in rows.items()} == {
        "a": ("NL", "ip", False),
        "b": ("FR", "location", False),
        "c": (None, None, True),
        "d": (None, None, False),
        "e": (None, None, True),
        "f": (None, None, False),
        "g": (None, None, False),
        "h": (None, None, False),
    }
    assert rows["a"]["ip"] == "193.0.14.0"  # looked up from the network silver keeps

    # The backfill of rows written before these columns gives the same values from silver alone.
    old = pl.from_arrow(silver).with_columns(
        pl.lit(None, pl.Boolean).alias("is_asset"),
        pl.when(pl.col("country_source") == "ip").then(None).otherwise(pl.col("country")).alias("country"),
        pl.lit(None, pl.String).alias("country_source"),
    )
    assert isinstance(old, pl.DataFrame)
    filled = transform.backfill_derived(old)
    assert filled.equals(pl.from_arrow(silver))
    assert transform.backfill_derived(filled).equals(filled)  # idempotent
