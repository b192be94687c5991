"""Timestamps (all formats): an RFC 3339 string with any offset; a string without offset is
read as UTC and flagged ``timestamp_naive``; an epoch time, as a JSON number or as a decimal
numeric string (``"1710072000.5"``; trackers such as Snowplow's send epoch milliseconds as text),
with or without a fraction, is epoch seconds when its magnitude is below 1e11 and epoch
milliseconds otherwise (1e11 s is the year 5138, 1e11 ms is 1973-03);
years outside [1970, 2100) are rejected. When the client sends ``sentAt``, its clock skew is
removed as Segment, PostHog and Snowplow do: ``timestamp = received_at - (sent_at -
original_timestamp)`` (https://segment.com/docs/connections/spec/common/#timestamps), never after
``received_at`` (a ``sent_at`` before the timestamp is a coarse clock); the
original text and ``sent_at`` are kept, and a result still more than 24 h after ``received_at``
is flagged ``timestamp_in_future`` (the pipeline's expectations decide what that means).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from warehouse.contract.errors import StructuralError

#: Numbers below this are epoch seconds, above it epoch milliseconds.
EPOCH_SECONDS_BELOW = 100_000_000_000


#: Accepted client years: [MIN_YEAR, MAX_YEAR). Outside it a timestamp is a bug, not an event time.
MIN_YEAR, MAX_YEAR = 1970, 2100


#: A corrected timestamp more than this after received_at is flagged ``timestamp_in_future``.
FUTURE_TOLERANCE = timedelta(hours=24)


_NO_SKEW = timedelta(0)

#: ``StructuralError.reason`` of a timestamp that cannot be read.
BAD_TIMESTAMP = "invalid_timestamp"


_LARGEST_EPOCH = 10**18  # far past any valid epoch ms (year 2100 is ~4.1e12)

#: An epoch time sent as text: optional sign, digits, optional fraction (no exponent, no spaces inside).
_EPOCH_TEXT = re.compile(r"[+-]?[0-9]{1,19}(\.[0-9]{1,9})?")


class EventTime(NamedTuple):
    """When an event happened, after clock-skew correction (all datetimes aware UTC, µs).

    A named tuple, not a frozen dataclass: one is built per ingested event, where a frozen
    dataclass's ``__init__`` costs twice as much.

    ``original`` is the client's timestamp exactly as sent (text, or the number's repr);
    ``sent_at`` the client's clock at send time, if sent.
    """

    timestamp: datetime
    original: str
    sent_at: datetime | None
    naive: bool
    in_future: bool


def parse_client_timestamp(value: Any, field: str = "timestamp") -> tuple[datetime, bool]:
    """Parse a client timestamp into ``(aware UTC datetime, naive)`` (µs precision).

    Accepts an RFC 3339 / ISO 8601 string (any offset; a string without offset is read as UTC
    and ``naive`` is ``True``), or epoch seconds (magnitude below :data:`EPOCH_SECONDS_BELOW`) or
    milliseconds as a JSON number or a decimal string (``"1710072000.5"``, ``"1710072000500"``;
    surrounding spaces ignored) (RFC 3339: https://www.rfc-editor.org/rfc/rfc3339).

    Raises:
        StructuralError: ``reason="invalid_timestamp"`` for booleans, other types, NaN/inf,
            unparseable strings, or years outside [:data:`MIN_YEAR`, :data:`MAX_YEAR`).
    """
    if isinstance(value, bool) or value is None:
        raise StructuralError(f"{field} must be an RFC 3339 string or epoch seconds/milliseconds", field, BAD_TIMESTAMP)
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):
        text = value.strip()
        value = float(text) if "." in text else int(text)
    if isinstance(value, (int, float)):  # a tuple: the union is built at each call
        if isinstance(value, int) and abs(value) > _LARGEST_EPOCH:  # also: ints too big for a float
            raise StructuralError(f"{field} is out of range", field, BAD_TIMESTAMP)
        if not math.isfinite(value):
            raise StructuralError(f"{field} is not a finite number", field, BAD_TIMESTAMP)
        seconds = value if abs(value) < EPOCH_SECONDS_BELOW else value / 1000
        try:
            parsed, naive = datetime.fromtimestamp(seconds, tz=UTC), False
        except (OverflowError, OSError, ValueError) as exc:
            raise StructuralError(f"{field} {value!r:.40} is out of range", field, BAD_TIMESTAMP) from exc
    elif isinstance(value, str):
        if "\x00" in value:  # fromisoformat stops at a NUL and would ignore what follows
            raise StructuralError(f"{field} contains a NUL character", field, BAD_TIMESTAMP)
        try:  # upper(): RFC 3339 section 5.6 allows a lowercase "t" and "z"
            parsed = datetime.fromisoformat(value.strip().upper())
        except (ValueError, OverflowError) as exc:
            raise StructuralError(f"unparseable {field} {value[:64]!r}", field, BAD_TIMESTAMP) from exc
        naive = parsed.tzinfo is None
        try:  # OverflowError: year 1 or 9999 pushed out of range by the offset
            parsed = parsed.replace(tzinfo=UTC) if naive else parsed.astimezone(UTC)
        except OverflowError as exc:
            raise StructuralError(f"{field} {value[:64]!r} is out of range", field, BAD_TIMESTAMP) from exc
    else:
        raise StructuralError(f"{field} must be an RFC 3339 string or epoch seconds/milliseconds", field, BAD_TIMESTAMP)
    if not MIN_YEAR <= parsed.year < MAX_YEAR:
        raise StructuralError(f"{field} year {parsed.year} is outside [{MIN_YEAR}, {MAX_YEAR})", field, BAD_TIMESTAMP)
    return parsed, naive


def resolve_event_time(timestamp: Any, sent_at: Any, received_at: datetime) -> EventTime:
    """Parse the client's timestamp and remove its clock skew when ``sent_at`` is given.

    ``timestamp = received_at - (sent_at - original)`` (Segment's spec, see module docstring);
    without ``sent_at`` the parsed timestamp is kept as is. A ``sent_at`` before the timestamp (an
    event sent before it happened: a clock coarser than the other, as snowplow-tracker's ``stm`` in
    whole seconds beside its ``dtm`` in ms) corrects to ``received_at``, never after it.

    Raises:
        StructuralError: either value is not a valid timestamp (see
            :func:`parse_client_timestamp`), or the correction leaves the supported range.
    """
    original, naive = parse_client_timestamp(timestamp)
    corrected, sent = original, None
    if sent_at is not None:
        sent, _ = parse_client_timestamp(sent_at, "sentAt")
        try:  # sent before it happened is a coarse clock (snowplow-tracker's stm is in whole seconds)
            corrected = received_at - max(sent - original, _NO_SKEW)
        except OverflowError as exc:
            raise StructuralError("sentAt and timestamp are too far apart", "sentAt", BAD_TIMESTAMP) from exc
        if not MIN_YEAR <= corrected.year < MAX_YEAR:
            raise StructuralError("timestamp corrected by sentAt leaves the supported years", "sentAt", BAD_TIMESTAMP)
    return EventTime(
        timestamp=corrected,
        original=timestamp if isinstance(timestamp, str) else repr(timestamp),
        sent_at=sent,
        naive=naive,
        in_future=corrected - received_at > FUTURE_TOLERANCE,
    )
