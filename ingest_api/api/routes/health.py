"""Liveness: ``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer ``{"status": "ok"}`` while the worker serves requests."""
    return {"status": "ok"}
