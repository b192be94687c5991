"""JSON error bodies for every failure, in the shape each protocol's clients read.

Native routes: ``{"error": "<code>", "detail": ...}`` (:class:`~ingest_api.models.NativeError`).
Segment-compatible routes (``/v1/batch``, ``/v1/track``…): ``{"success": false, "code": "<code>",
"message": "<text>", "detail": ...}`` (:class:`~ingest_api.models.SegmentError`), because
segment-analytics-python raises ``APIError(status, body["code"], body["message"])``. On Snowplow's
routes a refusal a retry cannot cure is 400 or 422 whatever its cause (the trackers retry others).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest_api.models import JsonAnswer, NativeError, SegmentError
from warehouse.contract.segment import SEGMENT_PATHS
from warehouse.contract.snowplow import SNOWPLOW_ROUTES
from warehouse.sources import SourcesError

log = logging.getLogger(__name__)


class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable ``error`` code, a ``detail`` payload and optional headers."""

    def __init__(
        self, status_code: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=dict(headers) if headers else None)
        self.error = error


def error_body(request: Request, error: str, detail: Any) -> NativeError | SegmentError:
    """The error body for ``request``'s protocol (see module docstring)."""
    if request.url.path in SEGMENT_PATHS:
        message = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
        return SegmentError(success=False, code=error, message=message, detail=detail)
    return NativeError(error=error, detail=detail)


#: Snowplow's trackers retry every status but 400, 401, 403, 410 and 422 (their emitters'
#: ``custom_retry_codes`` default): refusals that a retry cannot cure get one of those on its routes.
_SNOWPLOW_STATUSES = {413: 422, 414: 400, 415: 400}


def _status(request: Request, status: int) -> int:
    """The status of a refusal on ``request``'s route (see :data:`_SNOWPLOW_STATUSES`)."""
    if getattr(request.scope.get("route"), "path", None) in SNOWPLOW_ROUTES:
        return _SNOWPLOW_STATUSES.get(status, status)
    return status


async def _api_error(request: Request, exc: Exception) -> JsonAnswer:
    assert isinstance(exc, StarletteHTTPException)
    error = exc.error if isinstance(exc, ApiError) else _STATUS_CODES.get(exc.status_code, "http_error")
    return JsonAnswer(
        error_body(request, error, exc.detail), status_code=_status(request, exc.status_code), headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> JsonAnswer:
    assert isinstance(exc, RequestValidationError)
    return JsonAnswer(error_body(request, "invalid_request", exc.errors()), status_code=422)


def _retry_soon(request: Request, error: str, detail: str) -> JsonAnswer:
    """A 503 with ``Retry-After: 1``: nothing of the request was stored, and sending it again soon may work."""
    headers = {"Retry-After": "1"}
    return JsonAnswer(error_body(request, error, detail), status_code=_status(request, 503), headers=headers)


async def _shared_state_error(request: Request, exc: Exception) -> JsonAnswer:
    log.warning("shared state (Redis) unavailable: %s", exc)
    detail = "the nodes' shared state (Redis) cannot be reached; nothing was stored, send the request again"
    return _retry_soon(request, "shared_state_unavailable", detail)


async def _sources_error(request: Request, exc: Exception) -> JsonAnswer:
    log.error("%s", exc)
    detail = "the sources and their write keys cannot be read now; nothing was stored, send the request again"
    return _retry_soon(request, "sources_unavailable", detail)


async def _unexpected_error(request: Request, exc: Exception) -> JsonAnswer:
    log.error("unhandled error", exc_info=exc)
    return JsonAnswer(error_body(request, "internal_error", "unexpected server error; nothing was acknowledged"), 500)


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` a JSON body in its route's protocol shape."""
    app.add_exception_handler(StarletteHTTPException, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Sources and rate limits read Redis before any row is built: 503, and the client sends again.
    app.add_exception_handler(redis.RedisError, _shared_state_error)
    # Sources that cannot be read as a whole (a name twice, a bad entry in Redis): no key is accepted.
    app.add_exception_handler(SourcesError, _sources_error)
    app.add_exception_handler(Exception, _unexpected_error)
