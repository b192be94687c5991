"""The ingest API application: ``uvicorn ingest_api.main:app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ingest_api.api.routes import events, health
from ingest_api.errors import install_error_handlers
from ingest_api.group_commit import GroupCommitWriter
from warehouse.lake import Lake
from warehouse.settings import get_settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the group-commit writer with the worker; flush what is buffered on shutdown."""
    settings = get_settings()
    writer = GroupCommitWriter(
        Lake(settings.lake_root),
        interval_ms=settings.flush_interval_ms,
        max_rows=settings.flush_max_rows,
    )
    await writer.start()
    app.state.writer = writer
    log.info("ingest API writing bronze under %s", settings.lake_root)
    try:
        yield
    finally:
        await writer.stop()


def create_app() -> FastAPI:
    """Build the FastAPI application with its routes and JSON error handlers."""
    application = FastAPI(title="eventlake ingest API", version="0.1.0", lifespan=lifespan, redirect_slashes=False)
    install_error_handlers(application)
    # Browser SDKs post cross-origin (and navigator.sendBeacon sends text/plain, which the
    # route accepts: it parses the body whatever its Content-Type).
    application.add_middleware(
        CORSMiddleware,
        allow_origins=get_settings().cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        max_age=600,
    )
    application.include_router(health.router)
    application.include_router(events.router)
    return application


app = create_app()
