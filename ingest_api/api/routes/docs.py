"""OpenAPI descriptions of the ingest routes' bodies and answers (``/docs``, schemathesis).

The routes read their bodies themselves (size-capped, gzip-aware, lenient about
Content-Type for sendBeacon), so FastAPI cannot infer these; they are written out here.
"""

from __future__ import annotations

from typing import Any

_TIMESTAMP = {
    "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
    "description": "RFC 3339 (any offset; naive is read as UTC and flagged) or epoch seconds/milliseconds",
}

NATIVE_PAYLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["uuid", "timestamp"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1},
        "timestamp": _TIMESTAMP,
        "sentAt": _TIMESTAMP,
        "app": {"type": "string"},
        "page": {"type": "string"},
        "referrer": {"type": "string"},
        "user": {"type": "string"},
        "session": {"type": "string"},
        "location": {"oneOf": [{"type": "string"}, {"type": "object"}]},
        "userAgent": {"type": "string"},
        "ip": {"type": "string"},
        "writeKey": {"type": "string"},
        "events": {"type": "object", "maxProperties": 100, "additionalProperties": True},
    },
}

SEGMENT_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["messageId"],
    "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
    "description": "A Segment spec message; userId or anonymousId is required, event for track.",
    "properties": {
        "type": {"type": "string", "enum": ["track", "page", "screen", "identify", "group", "alias"]},
        "messageId": {"type": "string", "minLength": 1},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "groupId": {"type": "string"},
        "previousId": {"type": "string"},
        "timestamp": _TIMESTAMP,
        "originalTimestamp": _TIMESTAMP,
        "sentAt": _TIMESTAMP,
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "writeKey": {"type": "string"},
    },
}


def segment_message(message_type: str) -> dict[str, Any]:
    """The schema of one message posted to ``/v1/<message_type>`` (a track call needs ``event``)."""
    if message_type == "track":
        return {**SEGMENT_MESSAGE, "required": ["messageId", "event"]}
    return SEGMENT_MESSAGE


SEGMENT_BATCH: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": SEGMENT_MESSAGE},
        "sentAt": _TIMESTAMP,
        "writeKey": {"type": "string"},
    },
}

_REJECTED = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "error": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "reason": {"type": "string"},
        },
    },
}


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body (also sent as text/plain by beacons)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "text/plain": {"schema": {"type": "string"}}},
        }
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Not JSON, wrong top-level type, broken gzip, or (Segment single-event routes) an invalid event."),
    401: _error("Missing or unknown write key; nothing stored."),
    413: _error("Body over max_body_bytes (500 KB), too many payloads, or every event over max_event_bytes (32 KB)."),
    415: _error("A Content-Encoding other than gzip."),
    429: _error("The source's rate limit is reached; see Retry-After."),
    503: _error("Buffer full or bronze commit failed; nothing acknowledged; see Retry-After."),
}

NATIVE_ACCEPTED = {
    "description": "Stored durably in bronze (rejected payloads listed by index).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "rejected": _REJECTED,
                    "bronze_version": {"type": ["integer", "null"]},
                },
            }
        }
    },
}

SEGMENT_ACCEPTED = {
    "description": "Stored durably in bronze (Segment's answer, plus what was accepted and rejected).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "success": {"type": "boolean"},
                    "accepted": {"type": "integer"},
                    "rejected": _REJECTED,
                    "bronze_version": {"type": ["integer", "null"]},
                },
            }
        }
    },
}
