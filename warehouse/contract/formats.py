"""Reading bronze rows back, whatever wire format carried them (``source_format``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from warehouse.contract.native import read_native_fields
from warehouse.contract.posthog import POSTHOG_FORMAT, read_posthog_fields
from warehouse.contract.rows import NATIVE_FORMAT, EventFields
from warehouse.contract.segment import SEGMENT_FORMAT, read_segment_fields
from warehouse.contract.snowplow import SNOWPLOW_FORMAT, read_snowplow_fields

_READERS: dict[str, Callable[[dict[str, Any], str], EventFields]] = {
    NATIVE_FORMAT: read_native_fields,
    SEGMENT_FORMAT: read_segment_fields,
    POSTHOG_FORMAT: read_posthog_fields,
    SNOWPLOW_FORMAT: read_snowplow_fields,
}


def read_event_fields(payload_json: str, event_type: str, source_format: str = NATIVE_FORMAT) -> EventFields:
    """Read the typed fields of one bronze row from its ``payload`` JSON text.

    Raises:
        orjson.JSONDecodeError: ``payload_json`` is not JSON (bronze only holds JSON written by
            the ingest API, so this means a corrupted row).
        KeyError: an unknown ``source_format``.
    """
    payload = orjson.loads(payload_json)
    return _READERS[source_format](payload if isinstance(payload, dict) else {}, event_type)
