"""PostHog-compatible capture: the paths PostHog's SDKs post to, unchanged clients welcome.

Paths (each with and without its trailing slash): ``/batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/``,
``/track/`` take events; ``/decide/``, ``/flags/`` and ``/array/<token>/config`` (``.js``: as a script)
(posthog-js asks them at start-up) answer an empty, valid configuration: no feature flags, no session
recording. The project token
(``api_key``/``token``) is the source's write key.

Bodies, as PostHog's capture service reads them: JSON (one event, ``{"batch": [...]}``, or an array
of events), gzip (``Content-Encoding``, ``?compression=gzip``/``gzip-js`` or the magic bytes:
``ingest_api.api.deps``), lz-string base64 (``?compression=lz64``), a form body whose ``data`` field
holds the JSON (plain, base64 or lz64; ``compression`` may be a form field too), or base64 text.
JSON sent with a form content type (``curl -d``) is read as JSON.
Every decoding is bounded by ``max_body_bytes`` (bombs are refused with 413). Success is ``200
{"status": 1}`` (what posthog-python and posthog-js check), extended with ``accepted``,
``rejected`` and ``bronze_version``; errors are the native ``{"error", "detail"}`` (posthog-python
reports ``detail``). Mapping of fields: ``warehouse.contract.posthog``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ingest_api.api.deps import intake_of, read_body, settings_of
from ingest_api.auth import authenticate
from ingest_api.decoding import parse_document
from ingest_api.errors import ApiError
from ingest_api.intake import record_request
from ingest_api.lzstring import Lz64Error, Lz64TooLarge, decompress_from_base64
from ingest_api.models import JsonAnswer
from warehouse.contract.errors import StructuralError
from warehouse.contract.posthog import POSTHOG_FORMAT, event_row, token_of
from warehouse.settings import SourceConfig

router = APIRouter(tags=[POSTHOG_FORMAT])

#: The capture paths of PostHog's SDKs and API (``/i/v0/e/``: the current one).
CAPTURE_PATHS = ("/batch/", "/capture/", "/e/", "/i/v0/e/", "/track/")
#: The configuration paths posthog-js calls at start-up.
CONFIG_PATHS = ("/decide/", "/flags/")
#: posthog-js's remote configuration (``.js``: as a script).
REMOTE_CONFIG_PATH = "/array/{token}/config"
#: Every PostHog path, with and without the trailing slash.
POSTHOG_PATHS = frozenset(path for base in (*CAPTURE_PATHS, *CONFIG_PATHS) for path in (base, base.rstrip("/")))

_FORM = "application/x-www-form-urlencoded"


def posthog_document(body: bytes, compression: str, content_type: str, limit: int) -> Any:
    """The JSON document a PostHog request carries (module docstring), decoded within ``limit`` bytes.

    ``compression``: the request's ``?compression=``; ``content_type``: its Content-Type header.
    CPU-bound (lz64 is decoded in Python): the routes call it in a worker thread.

    Raises:
        ApiError: 400 ``invalid_body`` (a form without ``data``, text that is neither JSON nor
            base64), ``invalid_lz64`` or ``invalid_json``; 413 ``payload_too_large`` when lz64
            inflates past ``limit`` bytes (of UTF-8).
    """
    compression = compression.strip().lower()
    json_text = body.lstrip()[:1] in (b"{", b"[")  # `curl -d '{…}'` labels JSON as a form
    if (content_type.lower().startswith(_FORM) and not json_text) or body.startswith(b"data="):
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        if not form.get("data"):
            raise ApiError(400, "invalid_body", "a form body needs its events in a 'data' field")
        compression = (form.get("compression") or [compression])[0].strip().lower()
        text = form["data"][0].strip()
    else:
        text = body.decode("utf-8", errors="replace").strip().lstrip("\ufeff")  # a byte order mark: RFC 8259 §8.1
    encoded = text[:1] not in ("{", "[", "")
    if encoded:  # base64 and lz64 hold no space: one is a '+' the client left unescaped in a form
        text = text.replace(" ", "+")
    if compression == "lz64":
        too_large = ApiError(
            413, "payload_too_large", {"limit": "max_body_bytes", "limit_bytes": limit, "decompressed": True}
        )
        try:
            text = decompress_from_base64(text, limit)
        except Lz64TooLarge as exc:
            raise too_large from exc
        except Lz64Error as exc:
            raise ApiError(400, "invalid_lz64", str(exc)) from exc
        data = text.encode()
        if len(data) > limit:  # the decoder counts UTF-16 units; UTF-8 takes up to 3 bytes for one
            raise too_large
        return parse_document(data)
    if encoded:
        try:  # base64 of the JSON (posthog-js's legacy encoding): it shrinks, the body limit holds
            return parse_document(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "invalid_body", "the body is neither JSON nor base64 of JSON") from exc
    return parse_document(text.encode())


async def _document(request: Request, body: bytes, limit: int) -> Any:
    """:func:`posthog_document` of the request, off the event loop."""
    compression = request.query_params.get("compression", "")
    content_type = request.headers.get("content-type", "")
    return await asyncio.to_thread(posthog_document, body, compression, content_type, limit)


def _token(document: Any) -> str | None:
    """:func:`warehouse.contract.posthog.token_of`, refusals as 400 ``multiple_tokens``."""
    try:
        return token_of(document)
    except StructuralError as exc:
        raise ApiError(400, "multiple_tokens", exc.message) from exc


def _events(document: Any) -> tuple[list[Any], Any]:
    """The events of a document and the batch's ``sent_at``.

    Raises:
        ApiError: 400 ``invalid_body`` when it is not an event, a batch or an array.
    """
    if isinstance(document, list):
        return document, None
    if isinstance(document, dict):
        if isinstance(document.get("batch"), list):
            return document["batch"], document.get("sent_at")
        if "event" in document:
            return [document], None
    raise ApiError(400, "invalid_body", "expected an event, {'batch': [events]} or an array of events")


async def capture(request: Request) -> JsonAnswer:
    """Accept PostHog events; ``200 {"status": 1}`` once they are durable in bronze.

    An event that cannot be stored is listed in ``rejected`` by index and the others are stored;
    a request whose every event is rejected is 400 ``invalid_batch``. 401: no or unknown token.
    """
    body = await read_body(request)
    intake = intake_of(request)
    settings = settings_of(request)
    document = await _document(request, body, settings.max_body_bytes)
    events, sent_at = _events(document)
    result = await intake.ingest(
        request,
        document,
        events,
        POSTHOG_FORMAT,
        lambda event, ctx, _budget: [event_row(event, ctx, sent_at)],
        write_key=_token(document),
    )
    if not result.accepted and result.rejected:
        raise ApiError(400, "invalid_batch", {"message": "every event was rejected", "rejected": result.rejected})
    return JsonAnswer(
        {"status": 1, "accepted": result.accepted, "rejected": result.rejected, "bronze_version": result.bronze_version}
    )


async def configuration(request: Request) -> JsonAnswer:
    """Answer posthog-js's start-up call: no feature flags, no recording, the compressions we read.

    Raises:
        ApiError: 401 no or unknown token.
    """
    body = await read_body(request)
    intake = intake_of(request)
    settings = settings_of(request)
    document = await _document(request, body, settings.max_body_bytes) if body.strip() else {}
    token = _token(document) or request.query_params.get("token")
    record_request(request, POSTHOG_FORMAT, authenticate(intake.registry, request, document, token).name)
    return JsonAnswer(CONFIGURATION)


def _path_token_source(request: Request, token: str) -> SourceConfig:
    """The source whose write key is the project token in the path (headers do not count: the path
    names the project whose configuration is asked for).

    Raises:
        ApiError: 401 ``invalid_write_key``.
    """
    source = intake_of(request).registry.authenticate(token)
    if source is None:
        raise ApiError(401, "invalid_write_key", "the project token in the path does not belong to any source")
    record_request(request, POSTHOG_FORMAT, source.name)
    return source


#: What ``/decide/``, ``/flags/`` and the remote config answer: no feature flags, no recording, no
#: site apps, the compressions the capture routes read.
CONFIGURATION: dict[str, Any] = {
    "flags": {},
    "featureFlags": {},
    "featureFlagPayloads": {},
    "errorsWhileComputingFlags": False,
    "config": {"enable_collect_everything": True},
    "supportedCompression": ["gzip", "gzip-js", "lz64"],
    "sessionRecording": False,
    "autocapture_opt_out": False,
    "capturePerformance": False,
    "autocaptureExceptions": False,
    "heatmaps": False,
    "surveys": False,
    "siteApps": [],
    "toolbarParams": {},
    "isAuthenticated": False,
}


async def remote_config(request: Request, token: str) -> JsonAnswer:
    """``GET /array/<token>/config``: posthog-js's remote configuration (it asks at start-up when
    the script below did not load), the same empty configuration.

    Raises:
        ApiError: 401 unknown token (whatever key a header carries).
    """
    _path_token_source(request, token)
    return JsonAnswer(CONFIGURATION)


async def remote_config_script(request: Request, token: str) -> Response:
    """``GET /array/<token>/config.js``: the remote configuration as the script posthog-js loads
    first (it sets ``window._POSTHOG_REMOTE_CONFIG[token]``, as PostHog's own does).

    Raises:
        ApiError: 401 unknown token (whatever key a header carries).
    """
    _path_token_source(request, token)
    entry = orjson.dumps({token: {"config": CONFIGURATION, "siteApps": []}}).decode()
    script = f"window._POSTHOG_REMOTE_CONFIG = Object.assign(window._POSTHOG_REMOTE_CONFIG || {{}}, {entry});\n"
    return Response(script, media_type="application/javascript")


for _base in CAPTURE_PATHS:
    for _path in (_base, _base.rstrip("/")):
        router.add_api_route(_path, capture, methods=["POST"], include_in_schema=False)
for _base in CONFIG_PATHS:
    for _path in (_base, _base.rstrip("/")):
        router.add_api_route(_path, configuration, methods=["POST", "GET"], include_in_schema=False)
router.add_api_route(REMOTE_CONFIG_PATH, remote_config, methods=["GET"], include_in_schema=False)
router.add_api_route(REMOTE_CONFIG_PATH + ".js", remote_config_script, methods=["GET"], include_in_schema=False)
