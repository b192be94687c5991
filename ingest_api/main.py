"""The ingest API application: ``uvicorn ingest_api.main:app`` (one or more workers).

Each worker process runs a group-commit writer; the workers of one uvicorn master (a node) send
their micro-batches to the node's one committer process (``ingest_api.node_commit``), and nodes
append to the same bronze Delta table (delta-rs retries conflicting appends). On SIGTERM uvicorn stops accepting
connections and waits for in-flight requests; the lifespan's shutdown then commits whatever is
still buffered, so every request that was being served gets its answer.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ingest_api.api.routes import events, health, posthog, segment, snowplow
from ingest_api.errors import install_error_handlers
from ingest_api.group_commit import GroupCommitWriter
from ingest_api.intake import Intake
from ingest_api.node_commit import bronze_lake, node_of
from ingest_api.observe import IngestObserver, configure_logging
from ingest_api.ratelimit import SourceRateLimiter
from warehouse.settings import Settings, read_settings
from warehouse.sources import SourceRegistry, SourcesError, ensure_local_source

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the sources, start the group-commit writer; flush what is buffered on shutdown."""
    settings: Settings = app.state.settings
    ensure_local_source(settings)
    writer = GroupCommitWriter(
        bronze_lake(settings),
        interval_ms=settings.flush_interval_ms,
        max_buffer_rows=settings.max_buffer_events,
        max_buffer_bytes=settings.max_buffer_bytes,
        node=node_of(settings.lake_root),
    )
    await writer.start()
    registry = SourceRegistry.from_settings(settings)
    try:
        registry.check()
    except SourcesError as error:  # the node starts; requests get 503 and /readyz says why until it is fixed
        log.warning("%s", error)
    app.state.intake = Intake(
        settings,
        writer,
        registry,
        SourceRateLimiter(settings.rate_limit, settings.redis_url),
    )
    # What start-up allocated (modules, the app, schemas) lives as long as the worker: out of the
    # collector's sight, full collections scan only what requests allocate (Python's gc.freeze docs).
    gc.collect()
    gc.freeze()
    log.info("ingest API writing bronze under %s", settings.lake_root)
    try:
        yield
    finally:
        await writer.stop()


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI application with its routes, JSON error handlers and request log, configured
    by ``settings`` (kept in ``app.state.settings``, where the routes' dependencies read them)."""
    configure_logging()
    application = FastAPI(
        title="eventlake ingest API",
        version="0.1.0",
        description="Native and Segment-compatible event ingest into the bronze Delta table.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    application.state.settings = settings
    install_error_handlers(application)
    application.add_middleware(IngestObserver)
    # Browser SDKs post cross-origin (and navigator.sendBeacon sends text/plain, which the
    # routes accept: they parse the body whatever its Content-Type). Snowplow's JavaScript tracker
    # sends credentials: the allowed origin is echoed with Access-Control-Allow-Credentials (the API
    # sets no cookie and reads none: a write key, not a credential, authenticates a request).
    application.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        max_age=600,
    )
    application.include_router(health.router)
    application.include_router(events.router)
    application.include_router(segment.router)
    application.include_router(posthog.router)
    application.include_router(snowplow.router)
    return application


#: The worker's application: its settings read once, when uvicorn imports it.
app = create_app(read_settings("ingest API"))
