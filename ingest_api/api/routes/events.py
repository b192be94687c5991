"""Native ingest: ``POST /v1/events``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ingest_api.api.deps import intake_of, read_body
from ingest_api.decoding import parse_document
from ingest_api.errors import ApiError
from ingest_api.models import JsonAnswer, NativeAccepted, NativeBody, NativeError, answers, request_body
from warehouse.contract.native import explode_payload, native_event_count
from warehouse.contract.rows import NATIVE_FORMAT

router = APIRouter(tags=[NATIVE_FORMAT])


@router.post(
    "/v1/events",
    status_code=202,
    openapi_extra=request_body(NativeBody),
    responses=answers(202, NativeAccepted, NativeError),
)
async def post_events(request: Request) -> JsonAnswer:
    """Accept one native payload or an array of them; answer once they are durable in bronze.

    Responses:
        202 ``{"accepted": n, "rejected": [{"index", "error", "field", "reason"}], "bronze_version": v}``:
            ``accepted`` counts events (rows), ``rejected`` lists payloads refused for
            structural problems (by index in the array, 0 for a single object) and
            ``bronze_version`` is the Delta version that holds the accepted rows (``null``
            when nothing was accepted).
        400 body is not JSON, or not an object/array. 401 no or unknown write key. 413 body over
            ``max_body_bytes``, more than ``max_payloads_per_request`` payloads or
            ``max_events_per_request`` events, or only events
            over ``max_event_bytes``. 429 rate limited. 503 buffer full or commit failed: nothing
            of this request is acknowledged.
    """
    body = await read_body(request)
    intake = intake_of(request)
    document = parse_document(body)
    if isinstance(document, dict):
        payloads: list[Any] = [document]
    elif isinstance(document, list):
        payloads = document
    else:
        raise ApiError(400, "invalid_body", "expected a JSON object or an array of objects")
    result = await intake.ingest(
        request,
        document,
        payloads,
        NATIVE_FORMAT,
        lambda item, ctx, budget: explode_payload(item, ctx, budget),
        native_event_count,
    )
    answer: NativeAccepted = {
        "accepted": result.accepted,
        "rejected": result.rejected,
        "bronze_version": result.bronze_version,
    }
    return JsonAnswer(answer, status_code=202)
