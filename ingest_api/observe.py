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

import orjson
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

#: Where :func:`ingest_api.api.deps.read_body` leaves the size of the body it read (bytes on the wire).
BODY_BYTES = "body_bytes"

#: Routes whose successful answers are not logged (only counted).
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def configure_logging() -> None:
    """Request log lines as JSON objects with an ISO-8601 UTC timestamp and level.

    Serialized by orjson straight to bytes on stderr, as structlog's performance guide advises
    (https://www.structlog.org/en/stable/performance.html): one line per answer, and with the
    standard library's encoder and a text stream the line cost about 60 µs, a fifth of a
    one-event request's server time."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
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

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, status_send)
        finally:
            self._record(scope, state, status, time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        """Count the answer and log it (unless it is a quiet route's success)."""
        ingest = state.get("ingest") or {}
        source = ingest.get("source", "unknown")
        matched = scope.get("route")  # set by the router on a (partial) match
        route = getattr(matched, "path", None) or UNMATCHED
        # A refusal before the route ran (body too large, wrong method) has the format of its router's tag.
        fmt = ingest.get("format") or next(
            (tag for tag in getattr(matched, "tags", None) or [] if tag in FORMATS), "unknown"
        )
        metrics.count_request(route, source, fmt, status)
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
            bytes=state.get(BODY_BYTES, 0),
            duration_ms=round(seconds * 1000, 2),
            bronze_version=ingest.get("bronze_version"),
        )
