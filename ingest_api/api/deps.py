"""Request dependencies: the group-commit writer, settings and the size-capped body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from ingest_api.errors import ApiError
from ingest_api.group_commit import GroupCommitWriter
from warehouse.settings import Settings, get_settings


def _writer(request: Request) -> GroupCommitWriter:
    writer: GroupCommitWriter = request.app.state.writer
    return writer


async def _capped_body(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds ``max_body_bytes``.

    The declared Content-Length is checked first; a chunked or lying body is counted
    while it streams, so an oversized body is never held in memory whole.
    """
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", {"limit_bytes": limit, "content_length": int(declared)})
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "payload_too_large", {"limit_bytes": limit})
            chunks.append(chunk)
    except ClientDisconnect as exc:  # nothing to answer and nothing acknowledged: no traceback
        raise ApiError(400, "client_disconnected", "the client closed the connection mid-body") from exc
    return b"".join(chunks)


WriterDep = Annotated[GroupCommitWriter, Depends(_writer)]
BodyDep = Annotated[bytes, Depends(_capped_body)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
