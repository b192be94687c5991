"""Device, platform, bot and country enrichment of silver rows.

* User agent: browser, OS and device family from ua-parser (uap-core rules, Rust core); device
  type and client type from device-detector (Matomo's rules); crawlers from crawlerdetect and
  ua-parser's ``Spider`` device.
* Platform (``web``, ``ios``, ``android``, ``desktop``, ``server``): the SDK context first (the
  library that sent the event, its device type and OS, per Segment's context spec,
  https://segment.com/docs/connections/spec/common/#context), else what the user agent says.
* Country: :mod:`pipelines.geo`.
* Asset requests: a ``page_view`` whose URL is a static file (a stylesheet, script, image, font, …)
  is a request a browser makes for a page, not a page someone viewed (:func:`is_asset_request`).

The parsers are slow per distinct string (device-detector ~10 ms per user agent), so results are
cached per value here and silver calls them once per distinct value of a micro-batch.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from crawlerdetect import CrawlerDetect
from device_detector import DeviceDetector
from ua_parser import parse

_crawlers = CrawlerDetect()

PLATFORMS = ("web", "ios", "android", "desktop", "server")

#: Official SDK names (``context.library.name``) → the platform they run on: Segment
#: (https://segment.com/docs/connections/sources/catalog/), PostHog (``$lib``), RudderStack and Snowplow
#: (``warehouse.contract.snowplow`` names its trackers by their ``tv`` prefix).
#: Cross-platform SDKs (React Native, Flutter) are absent on purpose: their OS decides.
_LIBRARY_PLATFORMS = {
    "analytics.js": "web",
    "analytics-next": "web",
    "@segment/analytics-next": "web",
    "posthog-js": "web",
    "web": "web",
    "rudderlabs javascript sdk": "web",
    "analytics-ios": "ios",
    "analytics-swift": "ios",
    "posthog-ios": "ios",
    "rudder-ios-library": "ios",
    "analytics-android": "android",
    "analytics-kotlin": "android",
    "posthog-android": "android",
    "com.rudderstack.android.sdk.core": "android",
    "analytics-node": "server",
    "@segment/analytics-node": "server",
    "analytics-python": "server",
    "analytics-ruby": "server",
    "analytics-go": "server",
    "analytics-java": "server",
    "analytics-php": "server",
    "analytics.net": "server",
    "analytics-csharp": "server",
    "posthog-node": "server",
    "posthog-python": "server",
    "posthog-ruby": "server",
    "posthog-go": "server",
    "posthog-java": "server",
    "posthog-php": "server",
    "snowplow-javascript": "web",
    "snowplow-python": "server",
    "snowplow-ios": "ios",
    "snowplow-android": "android",
}
_MOBILE_OS = {"ios": "ios", "ipados": "ios", "watchos": "ios", "tvos": "ios", "android": "android"}
_DESKTOP_OS = {"windows", "mac", "mac os x", "macos", "linux", "ubuntu", "chrome os", "chromeos", "fedora", "debian"}


@dataclass(frozen=True)
class Device:
    """What a user agent says about the client. Unknown parts are ``None``.

    ``device_type`` is device-detector's (``desktop``, ``smartphone``, ``tablet``, ``phablet``,
    ``tv``, ``console``, ``wearable``, …); ``platform`` one of :data:`PLATFORMS`, or ``None``
    when the agent does not say (a generic HTTP client).
    """

    browser_family: str | None
    browser_version: str | None
    os_family: str | None
    os_version: str | None
    device_family: str | None
    device_type: str | None
    platform: str | None
    is_bot: bool


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major


def _os_platform(os_name: str | None, desktop: bool) -> str | None:
    name = (os_name or "").strip().lower()
    if name in _MOBILE_OS:
        return _MOBILE_OS[name]
    return "desktop" if desktop and name in _DESKTOP_OS else None


def _agent_platform(client_type: str, os_name: str | None) -> str | None:
    """Platform from device-detector's client type and OS: a browser is ``web`` on any OS; a
    native app is its OS's platform (``desktop`` for desktop OSes, e.g. Electron apps); an HTTP
    library is ``server`` unless it runs on a mobile OS (okhttp inside an Android app)."""
    if client_type == "browser":
        return "web"
    if client_type == "library":
        return _os_platform(os_name, desktop=False) or "server"
    if client_type in ("mobile app", "pim", "mediaplayer", "feed reader"):
        return _os_platform(os_name, desktop=True)
    return _os_platform(os_name, desktop=False)


#: Longer user agents are not parsed: no real client sends one, and the parsers' regexes take
#: seconds on a hostile 30 KB string (device-detector and crawlerdetect grow quadratically).
MAX_USER_AGENT_CHARS = 1024


@lru_cache(maxsize=65_536)
def device_from_user_agent(user_agent: str | None) -> Device:
    """Parse a user agent and flag crawlers.

    A missing user agent is not a bot by itself: server-side events often carry none. One over
    :data:`MAX_USER_AGENT_CHARS` is unknown (every field ``None``, not a bot).
    """
    if not user_agent or len(user_agent) > MAX_USER_AGENT_CHARS:
        return Device(None, None, None, None, None, None, None, False)
    result = parse(user_agent)
    agent, os, device = result.user_agent, result.os, result.device
    is_bot = (device is not None and device.family == "Spider") or _crawlers.isCrawler(user_agent)
    detected = DeviceDetector(user_agent, skip_bot_detection=True).parse()
    return Device(
        browser_family=agent.family if agent else None,
        browser_version=_version(agent.major, agent.minor) if agent else None,
        os_family=os.family if os else None,
        os_version=_version(os.major, os.minor) if os else None,
        device_family=device.family if device else None,
        device_type=str(getattr(kind, "value", kind)) if (kind := detected.device_type()) else None,
        platform=_agent_platform(detected.client_type(), detected.os_name() or None),
        is_bot=bool(is_bot),
    )


def _member(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value.strip().lower() if isinstance(value, str) else ""


@lru_cache(maxsize=4_096)
def platform_from_context(context: str | None) -> str | None:
    """The platform an SDK context (JSON text) names, or ``None`` when it names none.

    In order: a known web or server SDK (``library.name``, see ``_LIBRARY_PLATFORMS``); a known
    mobile SDK, unless the OS says otherwise (Swift on macOS); ``device.type`` ``ios``/``android``
    (Segment's mobile libraries set it); the OS (``os.name``: iOS/iPadOS → ``ios``, Android →
    ``android``, a desktop OS with an ``app`` object → ``desktop``). Text that is not a JSON
    object names none.
    """
    if not context:
        return None
    try:
        parsed = orjson.loads(context)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    by_os = _os_platform(_text(_member(parsed, "os"), "name"), desktop=bool(_member(parsed, "app")))
    library = _LIBRARY_PLATFORMS.get(_text(_member(parsed, "library"), "name"))
    if library in ("web", "server"):
        return library
    if library is not None:  # Swift and Kotlin SDKs also run on macOS / the JVM: their OS decides
        return by_os or library
    device_type = _text(_member(parsed, "device"), "type")
    if device_type in ("ios", "android"):
        return device_type
    return by_os


#: File extensions of static assets: what a page loads, never a page itself (stylesheets, scripts,
#: source maps, images, icons, fonts, audio and video, feeds and manifests). Documents a person opens
#: (``.pdf``, ``.html``, ``.php``, ``.aspx``) are pages.
ASSET_EXTENSIONS = frozenset(
    [
        "css",
        "js",
        "mjs",
        "map",
        "json",
        "xml",
        "txt",
        "webmanifest",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "webp",
        "avif",
        "svg",
        "ico",
        "bmp",
        "tif",
        "tiff",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "mp3",
        "mp4",
        "m4a",
        "ogg",
        "oga",
        "ogv",
        "webm",
        "wav",
        "flac",
        "mov",
        "avi",
        "wasm",
        "swf",
    ]
)
#: Content types of a page (RFC 9110 media types): any other known content type is an asset.
PAGE_CONTENT_TYPES = frozenset(("text/html", "application/xhtml+xml", "application/pdf"))
#: A media type ``type/subtype`` with optional parameters (RFC 9110, section 8.3.1: tokens).
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+\s*(?:;.*)?$", re.IGNORECASE)


@lru_cache(maxsize=65_536)
def is_asset_request(page_url: str | None, content_type: str | None = None, by_sdk: bool = False) -> bool:
    """Whether a ``page_view`` of ``page_url`` is a static-asset request rather than a page.

    ``content_type`` (the response's media type, when the client sent it as the event's
    ``content_type`` property) decides when it is a media type (RFC 9110 ``type/subtype``,
    parameters such as ``; charset=utf-8`` ignored): an asset unless it is one of
    :data:`PAGE_CONTENT_TYPES`. Anything else there (``"article"``, a number, an Accept-style list)
    says nothing. Otherwise the URL's path decides: its last segment's extension (case-insensitive;
    the query, fragment and the segment's ``;`` parameters ignored, percent-encoding decoded) is one
    of :data:`ASSET_EXTENSIONS` — unless ``by_sdk`` (the
    event came from a tracking SDK, whose page views are pages by construction: a page named
    ``/tags/node.js`` is no script). A URL without a path, or text that is no URL, is a page: only
    what is known to be a file is left out of page metrics.
    """
    if content_type and _MEDIA_TYPE.match(content_type.strip()):
        return content_type.split(";", 1)[0].strip().lower() not in PAGE_CONTENT_TYPES
    if not page_url or by_sdk:
        return False
    try:
        path = urlsplit(page_url).path
    except ValueError:
        return False
    # Percent-decoded (RFC 3986 section 2.1: /app%2Ecss is /app.css), a segment's parameters cut
    # (RFC 3986 section 3.3: /app.css;jsessionid=… names app.css).
    segment = posixpath.basename(unquote(path)).split(";", 1)[0]
    extension = posixpath.splitext(segment)[1]
    return extension[1:].lower() in ASSET_EXTENSIONS
