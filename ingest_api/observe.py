"""One structured log line and one request metric per ingest request (pure ASGI middleware).

The log line is JSON (structlog, https://www.structlog.org/en/stable/) on stderr with the
source, wire format, path, status, events accepted/rejected, body bytes, duration (ms) and
bronze version — never payload contents. Routes leave these in ``request.state.ingest``
(``ingest_api.intake``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import metrics

_INGEST_PREFIX = "/v1/"


def configure_logging() -> None:
    """Request log lines as JSON objects with an ISO-8601 UTC timestamp and level."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class IngestObserver:
    """Wraps the app; logs and counts every request under ``/v1/``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("eventlake.ingest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, recording its status, size and what the route stored."""
        if scope["type"] != "http" or not scope["path"].startswith(_INGEST_PREFIX) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body_bytes = 0

        async def counting_receive() -> Message:
            nonlocal body_bytes
            message = await receive()
            if message["type"] == "http.request":
                body_bytes += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            ingest = state.get("ingest") or {}
            source = ingest.get("source", "unknown")
            fmt = ingest.get("format", "unknown")
            metrics.REQUESTS.labels(source, fmt, str(status)).inc()
            self.log.info(
                "ingest_request",
                path=scope["path"],
                status=status,
                source=source,
                format=fmt,
                accepted=ingest.get("accepted", 0),
                rejected=ingest.get("rejected", 0),
                bytes=body_bytes,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                bronze_version=ingest.get("bronze_version"),
            )
