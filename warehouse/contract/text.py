"""JSON text → Python values, with NUL characters and lone surrogates repaired (every wire format).

orjson is fast but refuses lone UTF-16 surrogates (``"\\ud800"``) and invalid UTF-8, which
some clients send in free text (truncated emoji, binary junk in a form field). Rather than
losing the whole batch, such text is decoded again leniently: invalid UTF-8 and lone
surrogates become U+FFFD, and so do NUL characters (``\\u0000``), which Delta/Parquet text and
downstream tools treat as terminators. The U+FFFD replacement is the Unicode Standard's
recommended practice for ill-formed sequences (Unicode 15, §3.9 / §5.22). Numbers JSON cannot hold
(``NaN``, ``Infinity``, ``1e400``) are refused, as orjson refuses them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

REPLACEMENT = "\ufffd"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _fix(text: str) -> str:
    return _BAD_CHARS.sub(REPLACEMENT, text)


def repair(document: Any) -> Any:
    """``document`` with NUL and lone-surrogate characters in every string (keys too) as U+FFFD.

    Works in place on the freshly parsed lists and dicts, iteratively (any nesting depth the
    parser accepted). A repaired key moves to the end of its object.
    """
    if isinstance(document, str):
        return _fix(document)
    stack = [document] if isinstance(document, list | dict) else []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = _fix(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
            continue
        for key in list(node):
            item = node[key]
            if isinstance(item, str):
                item = _fix(item)
            elif isinstance(item, list | dict):
                stack.append(item)
            fixed = _fix(key)
            if fixed != key:
                del node[key]
            node[fixed] = item
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def loads_lenient(text: bytes) -> Any:
    """Parse JSON ``text``, repairing bad characters in its strings (module docstring).

    A leading UTF-8 byte order mark is ignored (RFC 8259 section 8.1 allows parsers to).

    Raises:
        ValueError: (``orjson.JSONDecodeError`` included) the text is not JSON (``NaN``/``Infinity``
            and numbers out of a double's range included), or nests too deeply to parse; the message
            is orjson's (position included).
    """
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        try:  # lone surrogates and bad UTF-8: the stdlib parser accepts them, repair() fixes them
            document = json.loads(
                text.decode("utf-8", errors="replace"), parse_constant=_reject_constant, parse_float=_finite
            )
        except (ValueError, RecursionError):
            raise exc from None
        return repair(document)
    if b"\\u0000" in text:  # rare: only then is a walk over every string worth it
        return repair(document)
    return document


_BOM = b"\xef\xbb\xbf"
