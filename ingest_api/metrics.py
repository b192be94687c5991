"""Prometheus metrics of the ingest API (prometheus-client), served at ``/metrics``.

With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by
them (``make up`` does): every worker writes its samples there and ``/metrics`` aggregates
them (https://prometheus.github.io/client_python/multiprocess/). Without it, ``/metrics``
shows the one worker that answered.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "eventlake_ingest_requests",
    "Every answer of the API by route template ('(unmatched)': no route), source, wire format and HTTP status.",
    ["route", "source", "format", "status"],
)
EVENTS = Counter(
    "eventlake_ingest_events",
    "Events by source, wire format and outcome: accepted (durable in bronze) or rejected.",
    ["source", "format", "outcome"],
)
REJECTED = Counter(
    "eventlake_ingest_rejected_events",
    "Events rejected at the edge, by reason (invalid_event, invalid_timestamp, event_too_large…).",
    ["reason"],
)
FLUSH_SECONDS = Histogram(
    "eventlake_group_commit_seconds",
    "Duration of one group commit (one Delta append of a micro-batch), seconds.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FLUSH_ROWS = Histogram(
    "eventlake_group_commit_events",
    "Events per group commit.",
    buckets=(1, 10, 100, 1_000, 5_000, 20_000, 100_000),
)
COMMIT_FAILURES = Counter(
    "eventlake_group_commit_failures",
    "Group commits that failed, and micro-batches a worker's committer went away with (their requests got 503).",
)
BUFFER_EVENTS = Gauge("eventlake_buffer_events", "Events buffered or being committed.", multiprocess_mode="livesum")
BUFFER_BYTES = Gauge(
    "eventlake_buffer_bytes", "Bytes of event JSON buffered or being committed.", multiprocess_mode="livesum"
)


def count_request(route: str, source: str, fmt: str, status: int) -> None:
    """Count one answer in :data:`REQUESTS`. The labelled child is looked up once per label set
    (``labels()`` costs a lock and a tuple each call, once per request)."""
    key = (route, source, fmt, status)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN[key] = REQUESTS.labels(route, source, fmt, str(status))
    child.inc()


#: Bounded by the routes × sources × formats × statuses the API has (the route is a template).
_REQUEST_CHILDREN: dict[tuple[str, str, str, int], Any] = {}


def render() -> tuple[bytes, str]:
    """The metrics exposition text and its content type (all workers' in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
