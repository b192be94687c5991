"""One request metric and one structured log line per answer (pure ASGI middleware).

Every answer is counted, refusals before any route (404 unknown path, 405 wrong method) included,
by route template (``/v1/events``; :data:`UNMATCHED` for a path no route knows: never the raw path,
which a client chooses), source, wire format and status. The log line is JSON (structlog,
https://www.structlog.org/en/stable/) on stderr with the route, path (the route's template; the raw
path, write keys masked, when no route matched: a key may travel in a path), status, source, wire format,
events accepted/rejected, body bytes, duration (ms) and bronze version — never payload contents;
the successful answers of the probes and ``/metrics`` (:data:`QUIET_ROUTES`) are counted but not
logged (a load balancer probes every few seconds). Routes leave what they stored in
``request.state.ingest`` (``ingest_api.intake``).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import metrics
from warehouse.contract.posthog import POSTHOG_FORMAT
from warehouse.contract.rows import NATIVE_FORMAT
from warehouse.contract.segment import SEGMENT_FORMAT
from warehouse.contract.snowplow import SNOWPLOW_FORMAT
from warehouse.sources import WRITE_KEY_PREFIX

#: Wire formats, as their routers tag their routes.
FORMATS = frozenset({NATIVE_FORMAT, SEGMENT_FORMAT, POSTHOG_FORMAT, SNOWPLOW_FORMAT})

#: The route label of a request no route matched.
UNMATCHED = "(unmatched)"

#: A write key inside a path no route knows (a tracker endpoint set up with its key, then mistyped).
_KEY_LIKE = re.compile(re.escape(WRITE_KEY_PREFIX) + r"[^/]*")  # the whole path segment, whatever it holds

#: Routes whose successful answers are not logged (only counted).
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


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
    """Wraps the app; counts and logs every HTTP answer (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("eventlake.ingest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, recording its status, size and what the route stored."""
        if scope["type"] != "http":
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
            self._record(scope, state.get("ingest") or {}, status, body_bytes, time.perf_counter() - started)

    def _record(self, scope: Scope, ingest: dict[str, Any], status: int, body_bytes: int, seconds: float) -> None:
        """Count the answer and log it (unless it is a quiet route's success)."""
        source = ingest.get("source", "unknown")
        matched = scope.get("route")  # set by the router on a (partial) match
        route = getattr(matched, "path", None) or UNMATCHED
        # A refusal before the route ran (body too large, wrong method) has the format of its router's tag.
        fmt = ingest.get("format") or next(
            (tag for tag in getattr(matched, "tags", None) or [] if tag in FORMATS), "unknown"
        )
        metrics.REQUESTS.labels(route, source, fmt, str(status)).inc()
        if route in QUIET_ROUTES and status < 300:
            return
        self.log.info(
            "ingest_request",
            route=route,
            method=scope["method"],
            path=route if route != UNMATCHED else _KEY_LIKE.sub(WRITE_KEY_PREFIX + "…", scope["path"][:256]),
            status=status,
            source=source,
            format=fmt,
            accepted=ingest.get("accepted", 0),
            rejected=ingest.get("rejected", 0),
            bytes=body_bytes,
            duration_ms=round(seconds * 1000, 2),
            bronze_version=ingest.get("bronze_version"),
        )
