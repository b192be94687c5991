"""Country enrichment: the ISO 3166-1 alpha-2 code of the client-sent location (pycountry's ISO
tables, plus everyday names they lack). Cached per value: silver calls it once per distinct location."""

from __future__ import annotations

from functools import lru_cache

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
