"""Write-key authentication: which source sent a request.

The key is read, in this order, from the ``X-Write-Key`` header, HTTP Basic auth with the key
as user name and an empty password (Segment's scheme, https://segment.com/docs/connections/
sources/catalog/libraries/server/http-api/#authentication), a ``writeKey`` field in the
top-level JSON object of the body (analytics.js beacons, which cannot set headers), or the field a
protocol keeps it in (PostHog's ``api_key``/``token``).
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request

from ingest_api.errors import ApiError
from warehouse.settings import SourceConfig
from warehouse.sources import SourceRegistry


def write_key_from(request: Request, document: Any) -> str | None:
    """The write key the request carries, or ``None``.

    Raises:
        ApiError: 401 ``invalid_authorization`` for a malformed Basic ``Authorization`` header.
    """
    header = request.headers.get("x-write-key")
    if header:
        return header.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except ValueError as exc:  # binascii.Error, non-ASCII input, UnicodeDecodeError
            raise ApiError(401, "invalid_authorization", "Basic credentials are not base64 of 'writeKey:'") from exc
        user, _, _ = decoded.partition(":")
        if user:
            return user
    if isinstance(document, dict) and isinstance(document.get("writeKey"), str):
        return str(document["writeKey"])
    return None


def authenticate(
    registry: SourceRegistry, request: Request, document: Any, body_key: str | None = None
) -> SourceConfig:
    """The source of the request's write key (:func:`write_key_from`, else ``body_key``: where a
    protocol carries it in its own field, e.g. PostHog's project token).

    Raises:
        ApiError: 401 ``missing_write_key`` or ``invalid_write_key``; nothing of the request is stored.
    """
    write_key = write_key_from(request, document) or body_key
    if not write_key:
        raise ApiError(
            401,
            "missing_write_key",
            "send the source's write key as X-Write-Key, as Basic auth 'writeKey:', as writeKey in the body, "
            "or in the protocol's own place (PostHog: api_key/token; Snowplow: a path prefix)",
        )
    source = registry.authenticate(write_key)
    if source is None:
        raise ApiError(401, "invalid_write_key", "the write key does not belong to any source")
    return source
