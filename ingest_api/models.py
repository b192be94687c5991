"""The ingest routes' request bodies and answers, from which ``/openapi.json`` is generated.

The routes read their bodies themselves (size-capped, gzip-aware, lenient about Content-Type for
sendBeacon) and the contract's own decoding (``warehouse.contract``, ``warehouse.contract.segment``) is the
validator, so no model here ever runs against a request: they are TypedDicts, plain dicts at run
time. Request bodies give the routes' ``requestBody`` through pydantic's JSON schema
(:func:`request_body`); the routes build their answers as these types (checked by mypy) and
declare them with :func:`answers`. Limits are the contract's constants and the settings' defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

import orjson
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from warehouse.contract.native import MAX_EVENTS_PER_PAYLOAD
from warehouse.contract.segment import MessageType
from warehouse.contract.time import EPOCH_SECONDS_BELOW, MAX_YEAR, MIN_YEAR
from warehouse.settings import Settings

#: Request bodies: other keys are stored as sent (in the bronze payload).
_OPEN = ConfigDict(use_attribute_docstrings=True, extra="allow")
#: Answers: exactly these keys.
_CLOSED = ConfigDict(use_attribute_docstrings=True, extra="forbid")

Timestamp = Annotated[
    Annotated[str, Field(json_schema_extra={"format": "date-time"})] | float,
    Field(
        description="RFC 3339 (any offset; without one it is read as UTC and flagged), or epoch seconds "
        f"(magnitude below {EPOCH_SECONDS_BELOW:.0e}) or milliseconds; years in [{MIN_YEAR}, {MAX_YEAR})"
    ),
]
NonBlank = Annotated[str, Field(min_length=1)]


@with_config(_OPEN)
class NativePayload(TypedDict, total=False):
    """One native payload: a row per key under ``events``, or one ``page_view`` without it."""

    uuid: Required[NonBlank]
    """Unique per payload; with the event name it makes the event id (replays keep their ids)."""
    timestamp: Required[Timestamp]
    sentAt: Timestamp
    """The client's clock when sent: the timestamp's clock skew is removed."""
    app: str
    page: str
    referrer: str
    user: str
    session: str
    location: str | dict[str, Any]
    context: dict[str, Any]
    """SDK context, Segment's keys (library, os, device…)."""
    userAgent: str
    ip: str
    writeKey: str
    events: Annotated[dict[str, Any], Field(max_length=MAX_EVENTS_PER_PAYLOAD)]
    """Event name → its properties (an object, or a scalar read as ``{"value": x}``)."""


#: ``POST /v1/events``: one payload or an array of them.
NativeBody = NativePayload | list[NativePayload]

#: Segment requires one of the two ids on every message.
_MESSAGE = ConfigDict(
    use_attribute_docstrings=True,
    extra="allow",
    json_schema_extra={"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]},
)


@with_config(_MESSAGE)
class SegmentMessage(TypedDict, total=False):
    """A Segment spec message (``/v1/<type>`` gives its type); userId or anonymousId is required."""

    messageId: Required[NonBlank]
    userId: str | float
    anonymousId: str | float
    name: str
    groupId: str
    previousId: str
    timestamp: Timestamp
    originalTimestamp: Timestamp
    """Used when ``timestamp`` is missing; without either the receive time is the event time."""
    sentAt: Timestamp
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any]
    writeKey: str


@with_config(_MESSAGE)
class TrackMessage(SegmentMessage, total=False):
    """A Segment track message (``POST /v1/track``); userId or anonymousId is required."""

    event: Required[str]
    """The event name; stored as its lower snake_case ``event_type``."""


@with_config(_MESSAGE)
class BatchMessage(SegmentMessage, total=False):
    """A message of a Segment batch: it names its type; a track message needs ``event``."""

    type: Required[MessageType]
    event: str


@with_config(_OPEN)
class SegmentBatch(TypedDict, total=False):
    """``POST /v1/batch``: messages refused one by one are listed by index, the others stored."""

    batch: Required[list[BatchMessage]]
    sentAt: Timestamp
    """Applies to the messages that carry no ``sentAt``."""
    context: dict[str, Any]
    """Merged under each message's own context."""
    writeKey: str


def segment_message(message_type: MessageType) -> type[SegmentMessage]:
    """The body of ``POST /v1/<message_type>`` (a track call needs ``event``)."""
    return TrackMessage if message_type == "track" else SegmentMessage


@with_config(_CLOSED)
class Rejection(TypedDict):
    """One payload or message refused for a structural problem (``warehouse.contract.StructuralError``)."""

    index: int
    """Its position in the request (0 for a single object)."""
    error: str
    field: str | None
    reason: str
    """``invalid_event``, ``invalid_timestamp``, ``event_too_large`` or ``expansion_too_large``."""


@with_config(_CLOSED)
class NativeAccepted(TypedDict):
    """The answer once the accepted events are durable in bronze."""

    accepted: int
    """Events stored (rows; one payload may hold several)."""
    rejected: list[Rejection]
    bronze_version: int | None
    """The Delta version holding the accepted rows; ``null`` when nothing was accepted."""


@with_config(_CLOSED)
class SegmentAccepted(TypedDict):
    """Segment's answer (``success``) once durable, plus what was accepted and rejected."""

    success: Literal[True]
    accepted: int
    rejected: list[Rejection]
    bronze_version: int | None


@with_config(_CLOSED)
class NativeError(TypedDict):
    """An error on a native route: nothing of the request was stored."""

    error: str
    """Machine-readable code (``invalid_json``, ``payload_too_large``, ``buffer_full``…)."""
    detail: Any
    """What was wrong: a text, or an object naming the limit and what was received."""


@with_config(_CLOSED)
class SegmentError(TypedDict):
    """An error on a Segment route, in the shape segment-analytics-python reads."""

    success: Literal[False]
    code: str
    message: str
    detail: Any


@with_config(_CLOSED)
class Readiness(TypedDict):
    """Whether this worker can commit events now."""

    status: Literal["ready", "not_ready"]
    shared_state: Literal["redis", "per_process"]
    """Where rate limits and sources are kept: Redis (shared by every node) or each worker process."""
    reason: NotRequired[str]
    """Why not (writer stopped, buffer full, storage error, Redis unreachable)."""


def request_body(body: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring ``body``'s JSON schema as the request body (beacons send it as text/plain)."""
    schema = TypeAdapter(body).json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline(schema, schema.get("$defs", {}))},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    }


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``#/$defs/…`` references replaced by what they name (they would
    resolve against the OpenAPI document's root, where there is no ``$defs``)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def _default(setting: str) -> Any:
    return Settings.model_fields[setting].default


_ERRORS = {
    400: "Not JSON, wrong top-level type or broken gzip; Segment: an invalid message (single routes) or a batch "
    "whose every message was rejected.",
    401: "Missing or unknown write key; nothing stored.",
    408: f"The body took longer than body_timeout_s (default {_default('body_timeout_s')} s) to arrive.",
    413: f"Body over max_body_bytes (default {_default('max_body_bytes')}, after gzip inflation), more than "
    f"max_payloads_per_request ({_default('max_payloads_per_request')}) payloads or max_events_per_request "
    f"({_default('max_events_per_request')}) events, or only events over max_event_bytes "
    f"({_default('max_event_bytes')}); nothing stored.",
    415: "A Content-Encoding other than gzip.",
    429: "The source's rate limit is reached; see Retry-After.",
    503: "Buffer full or bronze commit failed; nothing acknowledged; see Retry-After.",
}


def answers(status: int, accepted: type, error: type) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an ingest route: ``accepted`` on ``status`` once durable, ``error`` otherwise."""
    return {
        status: {"model": accepted, "description": "Stored durably in bronze (refused items listed by index)."},
        **{code: {"model": error, "description": text} for code, text in _ERRORS.items()},
    }


class JsonAnswer(JSONResponse):
    """Every JSON answer of the API: Starlette's ``JSONResponse`` rendered by orjson (compact UTF-8,
    as the standard encoder's settings there; about 8 µs less a request)."""

    def render(self, content: Any) -> bytes:
        """``content`` as JSON bytes.

        Raises:
            orjson.JSONEncodeError: ``content`` holds a value JSON cannot (NaN included, as Starlette).
        """
        return orjson.dumps(content)
