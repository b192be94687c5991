"""Segment-compatible ingest: ``POST /v1/batch`` and one route per message type.

Paths: ``/v1/batch`` (and its alias ``/v1/import``), ``/v1/track``, ``/v1/page``, ``/v1/screen``,
``/v1/identify``, ``/v1/group``, ``/v1/alias`` and the one-letter paths analytics.js uses
(``/v1/t``, ``/v1/p``, ``/v1/s``, ``/v1/i``, ``/v1/g``, ``/v1/a``). Success is ``200
{"success": true}`` (segment-analytics-python treats anything else as failure), extended with
``accepted``, ``rejected`` and ``bronze_version``; errors are ``{"success": false, "code",
"message"}`` (``ingest_api.errors``). Mapping of fields: ``warehouse.contract.segment``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ingest_api.api.deps import intake_of, read_body
from ingest_api.decoding import parse_document
from ingest_api.errors import ApiError
from ingest_api.intake import IngestResult
from ingest_api.models import (
    JsonAnswer,
    SegmentAccepted,
    SegmentBatch,
    SegmentError,
    answers,
    request_body,
    segment_message,
)
from warehouse.contract.segment import MESSAGE_TYPES, SEGMENT_FORMAT, SHORT_PATHS, MessageType, message_row

router = APIRouter(tags=[SEGMENT_FORMAT])


def _answer(result: IngestResult, single: bool) -> JsonAnswer:
    if not result.accepted and result.rejected:
        first = result.rejected[0]
        code = "invalid_event" if single else "invalid_batch"
        message = first["error"] if single else f"all {len(result.rejected)} messages were rejected"
        raise ApiError(400, code, message if single else {"message": message, "rejected": result.rejected})
    answer: SegmentAccepted = {
        "success": True,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "bronze_version": result.bronze_version,
    }
    return JsonAnswer(answer)


@router.post(
    "/v1/batch",
    openapi_extra=request_body(SegmentBatch),
    responses=answers(200, SegmentAccepted, SegmentError),
)
@router.post("/v1/import", include_in_schema=False)
async def post_batch(request: Request) -> JsonAnswer:
    """Accept a Segment batch ``{"batch": [messages], "sentAt"?, "context"?, "writeKey"?}``; 200 once durable.

    A message that cannot become an event is listed in ``rejected`` by index and the others
    are stored; a batch whose every message is rejected is 400 ``invalid_batch``.
    """
    body = await read_body(request)
    intake = intake_of(request)
    document = parse_document(body)
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise ApiError(400, "invalid_body", "expected a JSON object with a 'batch' array of messages")
    sent_at = document.get("sentAt")
    context = document.get("context") if isinstance(document.get("context"), dict) else None

    def build(message: Any, ctx: Any, _budget: int) -> list[dict[str, Any]]:
        return [message_row(message, ctx, batch_sent_at=sent_at, batch_context=context)]

    result = await intake.ingest(request, document, document["batch"], SEGMENT_FORMAT, build)
    return _answer(result, single=False)


def _single_route(message_type: MessageType) -> Any:
    async def post_message(request: Request) -> JsonAnswer:
        body = await read_body(request)
        intake = intake_of(request)
        document = parse_document(body)
        if not isinstance(document, dict):
            raise ApiError(400, "invalid_body", "expected one JSON object (a Segment message)")

        def build(message: Any, ctx: Any, _budget: int) -> list[dict[str, Any]]:
            return [message_row(message, ctx, message_type=message_type)]

        result = await intake.ingest(request, document, [document], SEGMENT_FORMAT, build)
        return _answer(result, single=True)

    post_message.__doc__ = f'Accept one Segment ``{message_type}`` message; 200 ``{{"success": true}}`` once durable.'
    post_message.__name__ = f"post_{message_type}"
    return post_message


for _type in MESSAGE_TYPES:
    _handler = _single_route(_type)
    router.add_api_route(
        f"/v1/{_type}",
        _handler,
        methods=["POST"],
        openapi_extra=request_body(segment_message(_type)),
        responses=answers(200, SegmentAccepted, SegmentError),
    )
for _short, _type in SHORT_PATHS.items():
    router.add_api_route(f"/v1/{_short}", _single_route(_type), methods=["POST"], include_in_schema=False)
