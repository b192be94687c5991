"""JSON request bodies → Python values (:func:`warehouse.contract.text.loads_lenient`: NUL
characters and lone surrogates repaired), refused with a clear 400."""

from __future__ import annotations

from typing import Any

import orjson

from ingest_api.errors import ApiError
from warehouse.contract.text import loads_lenient


def parse_document(body: bytes) -> Any:
    """Parse a JSON body, repairing bad characters in its strings (:func:`loads_lenient`).

    Raises:
        ApiError: 400 ``invalid_json`` naming orjson's complaint (position included) when the
            body is not JSON (``NaN``/``Infinity`` included), or nests too deeply to parse.
    """
    try:
        return loads_lenient(body)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", str(exc)) from exc
