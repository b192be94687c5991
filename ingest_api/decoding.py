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


def parse_document(body: bytes) -> Any:
    """Parse a JSON body, repairing bad characters in its strings (see module docstring).

    A leading UTF-8 byte order mark is ignored (RFC 8259 section 8.1 allows parsers to).

    Raises:
        ApiError: 400 ``invalid_json`` naming orjson's complaint (position included) when the
            body is not JSON (``NaN``/``Infinity`` included), or nests too deeply to parse.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # lone surrogates and bad UTF-8: the stdlib parser accepts them, repair() fixes them
            document = json.loads(body.decode("utf-8", errors="replace"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_json", str(exc)) from exc
        return repair(document)
    if b"\\u0000" in body:  # rare: only then is a walk over every string worth it
        return repair(document)
    return document


_BOM = b"\xef\xbb\xbf"
