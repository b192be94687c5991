"""The ingest flow every protocol shares: authenticate, rate-limit, build rows, commit.

Routes parse their wire format into a list of items (native payloads or Segment messages)
and a function turning one item into bronze rows; :meth:`Intake.ingest` does the rest and
reports per-item rejections by index. What happened is left in ``request.state.ingest`` for
the request log and metrics (``ingest_api.observe``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from ingest_api import metrics
from ingest_api.auth import authenticate
from ingest_api.errors import ApiError
from ingest_api.group_commit import BufferFullError, CommitError, GroupCommitWriter, RequestOverBufferError
from ingest_api.models import Rejection
from ingest_api.ratelimit import SourceRateLimiter
from warehouse.contract.errors import StructuralError
from warehouse.contract.rows import RequestContext, utf8_len
from warehouse.settings import Settings, SourceConfig
from warehouse.sources import SourceRegistry

#: One item (payload or message) + the request context + the remaining expansion budget (bytes) → rows.
RowBuilder = Callable[[Any, RequestContext, int], list[dict[str, Any]]]
#: How many events one item will become, counted cheaply before any row is built.
EventCounter = Callable[[Any], int]

#: Rows are built on the event loop, which is given back to other requests after this long (s):
#: a build's cost follows its content, not its event count (an event name of 170 U+FDFA normalizes to
#: 3,000 characters), so it is sliced by time. A thread hand-off per request cost more than building.
BUILD_SLICE_S = 0.005


@dataclass
class IngestResult:
    """What one request stored: events accepted (rows), items rejected, and the bronze version.

    ``rejected`` holds a :class:`~ingest_api.models.Rejection` per refused item; ``bronze_version``
    is the Delta version holding the accepted rows (``None`` when nothing was accepted).
    """

    accepted: int
    rejected: list[Rejection] = field(default_factory=list)
    bronze_version: int | None = None


def record_request(request: Request, source_format: str, source: str = "unknown") -> dict[str, Any]:
    """Start what ``request.state.ingest`` tells the request log and ``/metrics`` of a request (its
    source, wire format, events accepted and rejected); the returned dict is filled in as it goes."""
    state: dict[str, Any] = {"source": source, "format": source_format, "accepted": 0, "rejected": 0}
    request.state.ingest = state
    return state


class Intake:
    """The shared ingest flow; one per worker process (``app.state.intake``)."""

    def __init__(
        self, settings: Settings, writer: GroupCommitWriter, registry: SourceRegistry, limiter: SourceRateLimiter
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.registry = registry
        self.limiter = limiter

    def _admit(
        self,
        request: Request,
        document: Any,
        items: list[Any],
        count: EventCounter,
        write_key: str | None,
        source: SourceConfig | None,
        state: dict[str, Any],
    ) -> SourceConfig:
        """Authenticate the request (unless the route resolved its ``source``) and count its events
        against the source's rate limit; the source.

        Raises:
            ApiError: 401, 413 or 429 (see :meth:`ingest`).
            warehouse.sources.SourcesError, redis.RedisError: the sources or the shared counters
                cannot be read (the app answers 503).
        """
        source = source or authenticate(self.registry, request, document, write_key)
        state["source"] = source.name
        self.limiter.check(source, self._event_count(items, count))
        return source

    def _event_count(self, items: list[Any], count: EventCounter) -> int:
        """How many events ``items`` become; a request of too many payloads or events is refused (413)
        before any row is built."""
        if len(items) > self.settings.max_payloads_per_request:
            raise ApiError(
                413, "too_many_payloads", {"limit": self.settings.max_payloads_per_request, "received": len(items)}
            )
        events = sum(count(item) for item in items)
        if events > self.settings.max_events_per_request:
            raise ApiError(413, "too_many_events", {"limit": self.settings.max_events_per_request, "received": events})
        return events

    async def _commit(self, rows: list[dict[str, Any]], size: int) -> int:
        """Hand ``rows`` to the group commit and wait until they are durable; their bronze version.

        Raises:
            ApiError: 503 buffer full or commit failed (``Retry-After: 1``): nothing acknowledged; 413
                ``request_over_buffer`` when the request alone is over the buffer's bounds.
        """
        try:
            return await self.writer.submit(rows, size)
        except RequestOverBufferError as exc:  # it could never fit: retrying is no use
            detail = {"limit": "max_buffer_events/max_buffer_bytes", "events": len(rows), "bytes": size}
            raise ApiError(413, "request_over_buffer", detail) from exc
        except BufferFullError as exc:
            raise ApiError(503, "buffer_full", str(exc), headers={"Retry-After": "1"}) from exc
        except CommitError as exc:  # the cause is in the server log; clients only need to retry
            raise ApiError(
                503, "commit_failed", "bronze commit failed; nothing acknowledged, retry", headers={"Retry-After": "1"}
            ) from exc

    async def ingest(
        self,
        request: Request,
        document: Any,
        items: list[Any],
        source_format: str,
        build: RowBuilder,
        count: EventCounter = lambda _item: 1,
        write_key: str | None = None,
        source: SourceConfig | None = None,
    ) -> IngestResult:
        """Store ``items`` from ``request`` and wait until they are durable in bronze.

        ``document`` is the parsed body (where a ``writeKey`` may be). ``count`` tells how many
        events an item becomes; the request's total is checked against ``max_events_per_request``
        and the source's rate limit before rows are built (on the event loop, in slices: :data:`BUILD_SLICE_S`).
        ``write_key``: the key the protocol's body carries in its own field (PostHog's token),
        used when no header or ``writeKey`` gives one. ``source``: the source when the route
        resolved it itself (Snowplow's keyless pixel, by its app id); no write key is read then.

        Raises:
            ApiError: 401 no or unknown write key; 413 too many items or events, or every item was
                over the per-event size limit; 429 rate limited; 503 buffer full (``Retry-After``)
                or the commit failed — in every case nothing of the request is stored.
        """
        received_at = datetime.now(UTC)
        state = record_request(request, source_format)
        admit = (request, document, items, count, write_key, source, state)
        if self.limiter.shared:  # Redis round trips: off the event loop, so a slow Redis stalls no other request
            source = await asyncio.to_thread(self._admit, *admit)
        else:
            source = self._admit(*admit)

        ctx = RequestContext(
            received_at=received_at,
            user_agent=request.headers.get("user-agent"),
            ip=request.client.host if request.client else None,
            source=source.name,
            source_format=source_format,
            max_event_bytes=self.settings.max_event_bytes,
        )
        rows, rejected, size = await self._build_rows(items, ctx, build)
        state["rejected"] = len(rejected)
        if rejected:
            metrics.EVENTS.labels(source.name, source_format, "rejected").inc(len(rejected))
        if not rows and rejected and all(r["reason"] == "event_too_large" for r in rejected):
            raise ApiError(
                413,
                "event_too_large",
                {"limit": "max_event_bytes", "limit_bytes": self.settings.max_event_bytes, "rejected": rejected},
            )
        if not rows:
            return IngestResult(0, rejected)
        version = await self._commit(rows, size)
        state["accepted"] = len(rows)
        state["bronze_version"] = version
        metrics.EVENTS.labels(source.name, source_format, "accepted").inc(len(rows))
        return IngestResult(len(rows), rejected, version)

    async def _build_rows(
        self, items: list[Any], ctx: RequestContext, build: RowBuilder
    ) -> tuple[list[dict[str, Any]], list[Rejection], int]:
        """Rows of every item that builds, rejections by index, and the rows' payload bytes (UTF-8).
        Other requests run every :data:`BUILD_SLICE_S` meanwhile."""
        rows: list[dict[str, Any]] = []
        rejected: list[Rejection] = []
        size = 0
        yield_at = time.perf_counter() + BUILD_SLICE_S
        for index, item in enumerate(items):
            if time.perf_counter() > yield_at:
                await asyncio.sleep(0)
                yield_at = time.perf_counter() + BUILD_SLICE_S
            try:
                built = build(item, ctx, self.settings.max_expanded_bytes - size)
            except StructuralError as exc:
                rejected.append({"index": index, "error": exc.message, "field": exc.field, "reason": exc.reason})
                metrics.REJECTED.labels(exc.reason).inc()
                continue
            size += sum(utf8_len(row["payload"]) for row in built)
            rows.extend(built)
        return rows, rejected, size
