"""Country enrichment: the ISO 3166-1 alpha-2 code of an event's client.

Two sources, in this order (:func:`pipelines.transform.country_columns`; silver's ``country_source``
says which gave the value):

1. ``location``: what the client sent (pycountry's ISO tables, plus everyday names they lack). The
   client knows better than its address: a user's setting, the device's GPS, a server-side call that
   forwards its end user's location. Segment and Mixpanel also keep a sent location over the IP's.
2. ``ip``: the country the client's network is allocated to, from the truncated address silver keeps
   (IPv4 /24, IPv6 /48: the lookup needs no more, so it can be redone from silver after bronze's TTL).
   The database is PyPI's ``iptocc`` (MIT or Apache-2.0): the five Regional Internet Registries'
   delegation files (https://www.nro.net/about/rirs/statistics/), refreshed with each release and
   embedded in the wheel, IPv4 and IPv6. An RIR gives the country a block is *assigned* to, not where it
   is used: on 100k random public /24s it agreed with MaxMind GeoLite2 for 94.5% (``docs/analytics.md``,
   "Geo"). It has no regions, so silver has none.

Private, shared, loopback, link-local, documentation and other non-global ranges give no country
(dashboards show ``(unknown)``), as do RIR codes that name no country (``EU``). Locations are cached
per value; networks are looked up in one batch per micro-batch, each distinct one once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import iptocc
import orjson
import pycountry

_COUNTRY_KEYS = ("countryCode", "country_code", "country")
#: Everyday names pycountry's ISO names lack (ISO: "United Kingdom of Great Britain…", "Türkiye",
#: "Russian Federation", "Korea, Republic of").
_COUNTRY_ALIASES = {
    "uk": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "great britain": "GB",
    "britain": "GB",
    "russia": "RU",
    "turkey": "TR",
    "korea": "KR",
    "south korea": "KR",
    "north korea": "KP",
    "iran": "IR",
    "vietnam": "VN",
    "syria": "SY",
    "laos": "LA",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "moldova": "MD",
    "czech republic": "CZ",
    "holland": "NL",
}
#: USPS state abbreviations (https://pe.usps.com/text/pub28/28apb.htm): in free text "Dover, DE"
#: is Delaware as likely as Germany, so a two-letter part that is one of these names no country.
_US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "AS",
        "GU",
        "MP",
        "PR",
        "VI",
    ]
)


def _country(name: str, free_text: bool) -> str | None:
    """Alpha-2 code of a code or name; numeric codes never, US state abbreviations not in free text."""
    name = name.strip()
    if not name or name.isdigit():
        return None
    if name.lower() in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[name.lower()]
    if free_text and len(name) == 2 and name.upper() in _US_STATES:
        return None
    try:
        return str(pycountry.countries.lookup(name).alpha_2)
    except LookupError:
        return None


@lru_cache(maxsize=65_536)
def country_from_location(location: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a client-sent location, or ``None`` when it names no country.

    ``location`` is what silver's ``location`` column holds: JSON text of an object (Segment's
    ``context.location``) whose ``countryCode``, ``country_code`` or ``country`` is read, or
    free text whose last comma-separated part is read (``"Lyon, France"``, ``"London, UK"``).
    A part is an alpha-2 or alpha-3 code or an English country name (ISO 3166-1, via pycountry,
    plus everyday names such as UK, Russia, South Korea); anything else (a city alone, a typo, a
    numeric code) is no country rather than a guess. In free text a two-letter part that is a US
    state abbreviation is ambiguous ("Atlanta, GA", "Dover, DE") and names none; write the
    country's name ("Berlin, Germany") or send an object.
    """
    if not location:
        return None
    candidates: list[str] = []
    free_text = not location.lstrip().startswith("{")
    if not free_text:
        try:
            parsed = orjson.loads(location)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            candidates = [v for k in _COUNTRY_KEYS if isinstance(v := parsed.get(k), str)]
    else:
        candidates = [location.rsplit(",", 1)[-1]]
    return next((code for name in candidates if (code := _country(name, free_text))), None)


#: ``country_source`` values: which input gave silver's ``country``.
LOCATION_SOURCE = "location"
IP_SOURCE = "ip"


#: ISO 3166-1 alpha-2 codes: what an RIR file holds besides them (``EU``, ``AP``) names no country.
_COUNTRY_CODES = frozenset(str(country.alpha_2) for country in pycountry.countries)


def countries_of_networks(networks: Sequence[str]) -> list[str | None]:
    """ISO 3166-1 alpha-2 code of the country each address's block is allocated to (RIR data, via
    ``iptocc``'s batch lookup: ~0.2 µs an address), or ``None``; in order.

    A network is silver's ``ip`` (:func:`pipelines.sensitive_values.truncate_ip`: ``a.b.c.0``, an
    IPv6 /48, or ``::ffff:a.b.c.0``, looked up as its IPv4 address); a full address works the same.
    ``None`` for text that is no address, a block no RIR delegated — the RFC 1918 and shared
    (100.64/10) ranges, loopback, link-local, documentation, unique-local, multicast: IANA keeps
    them out of the RIRs' files, and ``tests/unit/test_enrichment.py`` checks each — or a code that
    names no country (``EU``).
    """
    addresses = [n[7:] if n[:7].lower() == "::ffff:" and "." in n else n for n in networks]
    return [code if code in _COUNTRY_CODES else None for code in iptocc.country_code(addresses)]
