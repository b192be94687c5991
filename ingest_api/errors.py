"""JSON error bodies for every failure: ``{"error": "<code>", "detail": ...}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable ``error`` code and a ``detail`` payload."""

    def __init__(self, status_code: int, error: str, detail: Any = None) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.error = error


def _body(error: str, detail: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = exc.error if isinstance(exc, ApiError) else _STATUS_CODES.get(exc.status_code, "http_error")
    return JSONResponse(_body(error, exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(_body("invalid_request", exc.errors()), status_code=422)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(_body("internal_error", "unexpected server error; nothing was acknowledged"), 500)


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` a JSON ``{"error", "detail"}`` body."""
    app.add_exception_handler(StarletteHTTPException, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
