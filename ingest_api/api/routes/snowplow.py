"""Snowplow-compatible collector: the tracker protocol's POST and the pixel, trackers unchanged.

Paths: ``POST /com.snowplowanalytics.snowplow/tp2`` (a ``payload_data`` batch) and ``GET /i`` (one
event in the query string, answered with a 1×1 GIF), each also under a key prefix:
``/<write key>/com.snowplowanalytics.snowplow/tp2``, ``/<write key>/i`` (trackers append the
protocol path to the endpoint they are given, so the key can travel in it). The write key may also
come in a header (``X-Write-Key``: the Python tracker's ``Emitter(session=…)``, the JavaScript
tracker's ``customHeaders``). The pixel can carry neither: it is accepted for the app ids
``EVENTLAKE_SNOWPLOW_PIXEL_APPS`` maps to a source, at most ``EVENTLAKE_SNOWPLOW_PIXEL_RATE_LIMIT``
requests per client IP. Refusals use statuses the trackers do not retry (400, 401, 403, 422:
``ingest_api.errors``); 429 and 503 are retried, as they should be. Mapping of fields:
``warehouse.contract.snowplow``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from ingest_api.api.deps import intake_of, read_body, settings_of
from ingest_api.decoding import parse_document
from ingest_api.errors import ApiError
from ingest_api.intake import IngestResult, Intake
from ingest_api.models import JsonAnswer
from warehouse.contract.rows import RequestContext
from warehouse.contract.snowplow import PIXEL_PATH, SNOWPLOW_FORMAT, TP2_PATH, tracker_event_row
from warehouse.contract.text import repair
from warehouse.settings import Settings, SourceConfig

router = APIRouter(tags=[SNOWPLOW_FORMAT])

#: A transparent 1×1 GIF, the pixel's answer.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
#: The longest pixel query string accepted (browsers and proxies cap URLs near 8 KB anyway).
MAX_PIXEL_QUERY_BYTES = 8_192

_pixel_limiter = SlidingWindowCounterRateLimiter(MemoryStorage())


def _answer(result: IngestResult) -> JsonAnswer:
    if not result.accepted and result.rejected:
        raise ApiError(400, "invalid_batch", {"message": "every event was rejected", "rejected": result.rejected})
    return JsonAnswer(
        {"accepted": result.accepted, "rejected": result.rejected, "bronze_version": result.bronze_version}
    )


async def _tp2(request: Request, body: bytes, intake: Intake, key: str | None) -> JsonAnswer:
    """Accept a ``payload_data`` batch; ``200`` once durable. An event that cannot be stored is listed
    in ``rejected`` by index and the others are stored; all refused is 400 ``invalid_batch``."""
    document = parse_document(body)
    events = document.get("data") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise ApiError(400, "invalid_body", "expected a payload_data object: {'schema': 'iglu:…', 'data': [events]}")
    result = await intake.ingest(request, document, events, SNOWPLOW_FORMAT, _build, write_key=key)
    return _answer(result)


async def _pixel(request: Request, intake: Intake, settings: Settings, key: str | None) -> Response:
    """Accept one event from the query string; a 1×1 GIF once durable.

    Raises:
        ApiError: 400 query string over :data:`MAX_PIXEL_QUERY_BYTES` or an event that cannot be
            stored; 401 an unknown key; 403 no key and an app id not allowed; 429 the client IP
            sent too many keyless pixels.
    """
    query = request.scope.get("query_string", b"")
    if len(query) > MAX_PIXEL_QUERY_BYTES:
        raise ApiError(400, "query_too_large", {"limit_bytes": MAX_PIXEL_QUERY_BYTES, "received": len(query)})
    event: dict[str, Any] = repair(dict(request.query_params))  # NUL and lone surrogates, as in bodies
    source = None
    if key is None and not request.headers.get("x-write-key"):
        source = _pixel_source(request, intake, settings, event.get("aid"))
    result = await intake.ingest(request, {}, [event], SNOWPLOW_FORMAT, _build, write_key=key, source=source)
    if result.rejected:
        raise ApiError(400, "invalid_event", result.rejected[0])
    return Response(PIXEL_GIF, media_type="image/gif", headers={"Cache-Control": "no-cache, no-store, must-revalidate"})


def _build(event: Any, ctx: RequestContext, _budget: int) -> list[dict[str, Any]]:
    return [tracker_event_row(event, ctx)]


async def post_tp2(request: Request) -> JsonAnswer:
    """``POST /com.snowplowanalytics.snowplow/tp2``, the key in a header."""
    body = await read_body(request)
    intake = intake_of(request)
    return await _tp2(request, body, intake, None)


async def post_tp2_with_key(request: Request, key: str) -> JsonAnswer:
    """``POST /<key>/com.snowplowanalytics.snowplow/tp2``."""
    body = await read_body(request)
    intake = intake_of(request)
    return await _tp2(request, body, intake, key)


async def get_pixel(request: Request) -> Response:
    """``GET /i``: the key in a header, or an allowed app id."""
    intake = intake_of(request)
    settings = settings_of(request)
    return await _pixel(request, intake, settings, None)


async def get_pixel_with_key(request: Request, key: str) -> Response:
    """``GET /<key>/i``."""
    intake = intake_of(request)
    settings = settings_of(request)
    return await _pixel(request, intake, settings, key)


def _pixel_source(request: Request, intake: Intake, settings: Settings, app: Any) -> SourceConfig:
    """The source a keyless pixel of app id ``app`` is recorded as, after its IP's rate limit.

    Raises:
        ApiError: 403 an app id not in ``snowplow_pixel_apps`` (or its source unknown); 429 over the
            per-IP limit, with ``Retry-After``.
    """
    name = settings.snowplow_pixel_apps.get(app) if isinstance(app, str) else None
    source = intake.registry.named(name) if name else None
    if source is None:
        raise ApiError(403, "pixel_not_allowed", "a pixel without a write key needs an app id (aid) allowed for one")
    item = parse(settings.snowplow_pixel_rate_limit)
    client = request.client.host if request.client else "unknown"
    if not _pixel_limiter.hit(item, "pixel", client):
        reset_at = _pixel_limiter.get_window_stats(item, "pixel", client).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            {"limit": str(item), "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
    return source


router.add_api_route(TP2_PATH, post_tp2, methods=["POST"], include_in_schema=False)
router.add_api_route("/{key}" + TP2_PATH, post_tp2_with_key, methods=["POST"], include_in_schema=False)
router.add_api_route(PIXEL_PATH, get_pixel, methods=["GET"], include_in_schema=False)
router.add_api_route("/{key}" + PIXEL_PATH, get_pixel_with_key, methods=["GET"], include_in_schema=False)
