"""Liveness ``GET /healthz``, readiness ``GET /readyz`` and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ingest_api import metrics
from ingest_api.intake import Intake
from ingest_api.models import JsonAnswer, Readiness
from warehouse.lake.tables import RAW_EVENTS

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer ``{"status": "ok"}`` while the worker serves requests (liveness)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"model": Readiness, "description": "Ready."},
        503: {"model": Readiness, "description": "Cannot commit now; the body says why."},
    },
)
async def readyz(request: Request) -> JsonAnswer:
    """200 ``{"status": "ready"}`` when this worker can commit events now, else 503 with the reason.

    Ready means: the group-commit writer runs, its buffer has room, it reaches its node's committer
    (a worker of several) and that one answers, the sources can be read (from Redis too, when the
    nodes share their state there), and bronze can be opened and the lake root written (a probe file is written and
    deleted). ``shared_state`` says where rate limits and sources are kept: ``redis`` or ``per_process``.
    """
    intake: Intake = request.app.state.intake
    shared = intake.registry.shared
    state: Literal["redis", "per_process"] = "redis" if shared is not None else "per_process"
    if not intake.writer.running:
        return _not_ready(state, "writer stopped")
    if not intake.writer.has_room:
        return _not_ready(state, "buffer full")
    if not await intake.writer.committer_reachable():
        return _not_ready(state, "no bronze committer on this node")
    if intake.writer.committer_stalled:
        return _not_ready(state, "the node's bronze committer is not answering")
    try:
        await asyncio.wait_for(asyncio.to_thread(intake.registry.check), timeout=5)
    except Exception as exc:  # noqa: BLE001 (any error: the node cannot authenticate write keys)
        return _not_ready(state, f"sources: {exc}"[:500])
    try:
        await asyncio.wait_for(asyncio.to_thread(intake.writer.lake.probe, RAW_EVENTS), timeout=5)
    except Exception as exc:  # any storage error means "cannot commit"
        return _not_ready(state, f"storage: {exc}"[:500])
    return JsonAnswer(Readiness(status="ready", shared_state=state))


def _not_ready(state: Literal["redis", "per_process"], reason: str) -> JsonAnswer:
    return JsonAnswer(Readiness(status="not_ready", shared_state=state, reason=reason), status_code=503)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus text exposition of the ingest metrics (``ingest_api.metrics``)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
