"""Native ingest: ``POST /v1/events``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.api.deps import BodyDep, SettingsDep, WriterDep
from ingest_api.errors import ApiError
from ingest_api.group_commit import CommitError
from warehouse.contract import RequestContext, StructuralError, explode_payload

router = APIRouter()


@router.post("/v1/events", status_code=202)
async def post_events(request: Request, body: BodyDep, writer: WriterDep, settings: SettingsDep) -> JSONResponse:
    """Accept one native payload or an array of them; answer once they are durable in bronze.

    Responses:
        202 ``{"accepted": n, "rejected": [{"index", "error", "field"}], "bronze_version": v}``:
            ``accepted`` counts events (rows), ``rejected`` lists payloads refused for
            structural problems (by index in the array, 0 for a single object) and
            ``bronze_version`` is the Delta version that holds the accepted rows (``null``
            when nothing was accepted).
        400 body is not JSON, or not an object/array. 413 body too large, or more than
            ``max_payloads_per_request`` payloads.
        503 the bronze commit failed: nothing of this request is acknowledged.
    """
    received_at = datetime.now(UTC)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from exc
    if isinstance(document, dict):
        payloads: list[Any] = [document]
    elif isinstance(document, list):
        payloads = document
    else:
        raise ApiError(400, "invalid_body", "expected a JSON object or an array of objects")
    if len(payloads) > settings.max_payloads_per_request:
        raise ApiError(
            413, "too_many_payloads", {"limit": settings.max_payloads_per_request, "received": len(payloads)}
        )

    ctx = RequestContext(
        received_at=received_at,
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client else None,
    )
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    budget = settings.max_expanded_bytes
    for index, payload in enumerate(payloads):
        try:
            exploded = explode_payload(payload, ctx, max_bytes=budget)
            budget -= sum(len(row["payload"]) for row in exploded)
            rows.extend(exploded)
        except StructuralError as exc:
            rejected.append({"index": index, "error": exc.message, "field": exc.field})

    version = None
    if rows:
        try:
            version = await writer.submit(rows)
        except CommitError as exc:
            raise ApiError(503, "commit_failed", str(exc)) from exc
    return JSONResponse({"accepted": len(rows), "rejected": rejected, "bronze_version": version}, status_code=202)
