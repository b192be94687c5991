"""A no-op ingest API: the framework's own limit, for ``bench/bench_ingest_limit.py``.

Same routes as the real API (``POST /v1/events``, ``POST /v1/batch``, PostHog's ``POST /batch/``,
Snowplow's ``POST /com.snowplowanalytics.snowplow/tp2``, ``GET /healthz``) on plain
FastAPI, without middleware, auth, rate limiting or storage: each POST reads the whole body,
parses it with orjson (so JSON parsing is paid, like a minimal collector) and answers at once
with the number of items it saw. The benchmark serves it with the real API's own uvicorn command
(``tests.conftest.start_api``, app swapped), which is by hand:

    .venv/bin/python -m uvicorn noop_app:app --app-dir bench --host 127.0.0.1 --port 8001 --workers 1 --no-access-log
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI(title="no-op ingest", redirect_slashes=False)


def _json(content: dict[str, Any], status_code: int) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness, to wait on at start."""
    return {"status": "ok"}


@app.post("/v1/events")
async def post_events(request: Request) -> Response:
    """Read and parse a native payload or array of payloads; 202 with their count, nothing stored."""
    document = orjson.loads(await request.body())
    accepted = len(document) if isinstance(document, list) else 1
    return _json({"accepted": accepted, "rejected": [], "bronze_version": None}, 202)


@app.post("/v1/batch")
async def post_batch(request: Request) -> Response:
    """Read and parse a Segment batch; 200 with its message count, nothing stored."""
    document = orjson.loads(await request.body())
    accepted = len(document.get("batch", [])) if isinstance(document, dict) else 0
    return _json({"success": True, "accepted": accepted, "rejected": [], "bronze_version": None}, 200)


@app.post("/batch/")
async def post_posthog_batch(request: Request) -> Response:
    """Read and parse a PostHog batch; 200 ``{"status": 1}``, nothing stored."""
    document = orjson.loads(await request.body())
    accepted = len(document.get("batch", [])) if isinstance(document, dict) else 0
    return _json({"status": 1, "accepted": accepted, "rejected": [], "bronze_version": None}, 200)


@app.post("/com.snowplowanalytics.snowplow/tp2")
async def post_tp2(request: Request) -> Response:
    """Read and parse a Snowplow ``payload_data`` batch; 200 with its event count, nothing stored."""
    document = orjson.loads(await request.body())
    accepted = len(document.get("data", [])) if isinstance(document, dict) else 0
    return _json({"accepted": accepted, "rejected": [], "bronze_version": None}, 200)
