"""Device and bot enrichment from the user agent (ua-parser with its Rust core, crawlerdetect).

Both libraries are slow per distinct string, so results are cached by user agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from crawlerdetect import CrawlerDetect
from ua_parser import parse

_crawlers = CrawlerDetect()


@dataclass(frozen=True)
class Device:
    """What a user agent says about the client. Unknown parts are ``None``."""

    browser_family: str | None
    browser_version: str | None
    os_family: str | None
    os_version: str | None
    device_family: str | None
    is_bot: bool


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major


@lru_cache(maxsize=65_536)
def device_from_user_agent(user_agent: str | None) -> Device:
    """Parse a user agent (ua-parser's uap-core rules) and flag crawlers (crawlerdetect).

    A missing user agent is not a bot by itself: server-side events often carry none.
    """
    if not user_agent:
        return Device(None, None, None, None, None, False)
    result = parse(user_agent)
    agent, os, device = result.user_agent, result.os, result.device
    is_bot = (device is not None and device.family == "Spider") or _crawlers.isCrawler(user_agent)
    return Device(
        browser_family=agent.family if agent else None,
        browser_version=_version(agent.major, agent.minor) if agent else None,
        os_family=os.family if os else None,
        os_version=_version(os.major, os.minor) if os else None,
        device_family=device.family if device else None,
        is_bot=bool(is_bot),
    )
