"""JSON request bodies → Python values, with NUL characters and lone surrogates repaired.

orjson is fast but refuses lone UTF-16 surrogates (``"\\ud800"``) and invalid UTF-8, which
some clients send in free text (truncated emoji, binary junk in a form field). Rather than
losing the whole batch, such a body is decoded again leniently: invalid UTF-8 and lone
surrogates become U+FFFD, and so do NUL characters (``\\u0000``), which Delta/Parquet text and
downstream tools treat as terminators. The U+FFFD replacement is the Unicode Standard's
recommended practice for ill-formed sequences (Unicode 15, §3.9 / §5.22).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from ingest_api.errors import ApiError

REPLACEMENT = "\ufffd"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def repair(value: Any) -> Any:
    """``value`` with NUL and lone-surrogate characters in every string (keys too) as U+FFFD."""
    if isinstance(value, str):
        return _BAD_CHARS.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [repair(item) for item in value]
    if isinstance(value, dict):
        return {repair(key): repair(item) for key, item in value.items()}
    return value


def parse_document(body: bytes) -> Any:
    """Parse a JSON body, repairing bad characters in its strings (see module docstring).

    Raises:
        ApiError: 400 ``invalid_json`` naming orjson's complaint (position included) when the
            body is not JSON, or nests too deeply to parse.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # lone surrogates and bad UTF-8: the stdlib parser accepts them, repair() fixes them
            document = json.loads(body.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_json", str(exc)) from exc
        return repair(document)
    if b"\\u0000" in body:  # rare: only then is a walk over every string worth it
        return repair(document)
    return document
