"""Scrubbing rules: secrets and personal data never reach silver.

* Values under sensitive keys (password, passwd, pwd, secret, token, api key, authorization,
  cookie, ssn, card number, cvv/cvc — case-insensitive, anywhere in nested objects and in
  URL query strings) become ``[REDACTED]``.
* ``key=value`` / ``key: value`` pairs with those keys inside free text (stack traces,
  messages) have their value replaced by ``[REDACTED]``.
* Email addresses in any string (including URLs, also ``%40``-encoded) become ``[EMAIL]``.
* IP addresses are truncated to their network: IPv4 /24, IPv6 /48.

Identifiers (event_id, user_id, session_id) are not passed through these rules.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
EMAIL_MASK = "[EMAIL]"

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api_?key|authori[sz]ation|cookie|ssn|"
    r"(credit_?)?card_?(number|no|num)|cvv|cvc",
    re.IGNORECASE,
)
_SENSITIVE_PAIR = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|pwd|secret|token|api_?key|authorization|cookie)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"'&,;()\[\]{}<>]+)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def is_sensitive_key(key: str) -> bool:
    """Whether a property or query-string key names a secret (``X-Api-Key``, ``userPassword``…)."""
    return _SENSITIVE_KEY.search(key.replace("-", "_")) is not None


def scrub_text(text: str) -> str:
    """Mask secret ``key=value`` pairs and email addresses inside free text."""
    text = _SENSITIVE_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{m['quote']}{REDACTED}", text)
    return _EMAIL.sub(EMAIL_MASK, text)


def scrub_url(url: str) -> str:
    """Mask sensitive query parameters and emails in a URL; other parts stay as they are."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub_text(url)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_sensitive_key(k) else v) for k, v in pairs], safe="[]@")
        parts = parts._replace(query=query)
    return scrub_text(urlunsplit(parts))


def scrub_value(value: Any) -> Any:
    """Scrub a decoded JSON value recursively: sensitive keys masked, strings scrubbed."""
    if isinstance(value, dict):
        return {key: REDACTED if is_sensitive_key(str(key)) else scrub_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_value(item) for item in value]
    if isinstance(value, str):
        return scrub_url(value) if value.startswith(("http://", "https://")) else scrub_text(value)
    return value


def truncate_ip(address: str | None) -> str | None:
    """The address's network with host bits zeroed (IPv4 /24, IPv6 /48); ``None`` if not an IP."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
