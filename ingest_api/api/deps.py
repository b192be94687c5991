"""Request dependencies: the shared ingest flow, settings and the size-capped body."""

from __future__ import annotations

import zlib
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from ingest_api.errors import ApiError
from ingest_api.intake import Intake
from warehouse.settings import Settings, get_settings


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def _capped_body(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> bytes:
    """The request body (gunzipped when needed), refused with 413 past ``max_body_bytes``.

    The declared Content-Length is checked first; a chunked or lying body is counted
    while it streams, so an oversized body is never held in memory whole. A gzip body
    (``Content-Encoding: gzip``, or the gzip magic bytes without that header) is inflated up to
    the same limit. Other content encodings are 415.
    """
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit, "content_length": int(declared)}
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit})
            chunks.append(chunk)
    except ClientDisconnect as exc:  # nothing to answer and nothing acknowledged: no traceback
        raise ApiError(400, "client_disconnected", "the client closed the connection mid-body") from exc
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "unsupported_content_encoding", {"content_encoding": encoding, "supported": ["gzip"]})
    # Some SDKs gzip without saying so (no header): the gzip magic bytes are never valid JSON.
    if encoding == "gzip" or body.startswith(_GZIP_MAGIC):
        return _gunzip(body, limit)
    return body


_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing (413) to inflate past ``limit`` bytes (gzip bombs).

    The limit is the same as for uncompressed bodies: compression changes the transfer, not
    how much JSON one request may carry (RFC 1952 gzip format).
    """
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect the gzip header and trailer
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", str(exc)) from exc
    if len(data) > limit:
        raise ApiError(
            413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit, "decompressed": True}
        )
    if not inflater.eof:
        raise ApiError(400, "invalid_gzip", "truncated gzip stream")
    return data


IntakeDep = Annotated[Intake, Depends(_intake)]
BodyDep = Annotated[bytes, Depends(_capped_body)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
