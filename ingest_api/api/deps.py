"""What every ingest route reads from its request: the shared ingest flow, the settings and the
size-capped body.

Plain functions the routes call, not FastAPI ``Depends``: solving three dependencies cost about
90 µs a request, a third of a one-event request's whole server time (``bench/bench_ingest_limit.py
--batch 1 --clients 1000``).
"""

from __future__ import annotations

import asyncio
import zlib

from fastapi import Request
from starlette.requests import ClientDisconnect

from ingest_api.errors import ApiError
from ingest_api.intake import Intake
from ingest_api.observe import BODY_BYTES
from warehouse.settings import Settings


def intake_of(request: Request) -> Intake:
    """The worker's ingest flow (built by :func:`ingest_api.main.lifespan`)."""
    intake: Intake = request.app.state.intake
    return intake


def settings_of(request: Request) -> Settings:
    """The settings the application was built with (read once at start-up, :func:`ingest_api.main.create_app`)."""
    settings: Settings = request.app.state.settings
    return settings


async def read_body(request: Request) -> bytes:
    """The request body (gunzipped when needed), refused with 413 past ``max_body_bytes``.

    The declared Content-Length is checked first; a chunked or lying body is counted
    while it streams, so an oversized body is never held in memory whole; a body that takes
    longer than ``body_timeout_s`` to arrive is 408. A gzip body
    (``Content-Encoding: gzip``, or the gzip magic bytes without that header) is inflated up to
    the same limit. Other content encodings are 415.
    """
    settings = settings_of(request)
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit, "content_length": int(declared)}
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_timeout_s):  # slow or lying uploads free their connection
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit})
                chunks.append(chunk)
    except ClientDisconnect as exc:  # nothing to answer and nothing acknowledged: no traceback
        raise ApiError(400, "client_disconnected", "the client closed the connection mid-body") from exc
    except TimeoutError as exc:
        raise ApiError(
            408, "body_timeout", {"limit": "body_timeout_s", "seconds": settings.body_timeout_s, "received": size}
        ) from exc
    finally:  # for the request log, also when the body was refused part way
        request.scope.setdefault("state", {})[BODY_BYTES] = size
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
    how much JSON one request may carry. Several concatenated gzip members are one stream (RFC
    1952 section 2.2); anything else after the last member is an error, not silently dropped.
    """
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect the gzip header and trailer
        try:
            data = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise ApiError(400, "invalid_gzip", str(exc)) from exc
        size += len(data)
        if size > limit:
            detail = {"limit": "max_body_bytes", "limit_bytes": limit, "decompressed": True}
            raise ApiError(413, "payload_too_large", detail)
        if not inflater.eof:
            raise ApiError(400, "invalid_gzip", "truncated gzip stream")
        out.append(data)
        rest = inflater.unused_data
        if not rest:
            return b"".join(out)
        if not rest.startswith(_GZIP_MAGIC):
            raise ApiError(400, "invalid_gzip", f"{len(rest)} bytes of trailing data after the gzip stream")
