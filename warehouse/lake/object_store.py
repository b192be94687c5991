"""Object storage: one configuration for every client of the lake, and the check that a store keeps
Delta's commits safe.

The configuration is delta-rs's storage options (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``; built from the ``EVENTLAKE_S3_*``
settings by :func:`s3_storage_options`). The same dictionary configures pyarrow's filesystem
(:func:`filesystem`: the Delta log read by file name, scans through Arrow datasets, the readiness
probe) and obstore (:func:`check_conditional_writes`), so every client sees the same store.

Why the check: a Delta commit is the creation of the log file of the next version. Two writers that
race for the same version are kept apart only by the store refusing the second creation (S3's
``If-None-Match: *``, HTTP 412; delta-rs 1.x relies on it, with no lock service). A store that
ignores the condition answers 200 to both, and one commit is silently lost
(``../shared/notes/scale.md``: 9 of 20 concurrent commits behind such a proxy). Local folders are safe
(delta-rs renames without replacing).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import obstore
import pyarrow.fs as pafs
from obstore.exceptions import AlreadyExistsError
from obstore.store import from_url

log = logging.getLogger(__name__)

_checked: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
_checked_lock = threading.Lock()


class StoreAccessError(OSError):
    """The object store of a lake root cannot be reached or written (endpoint, credentials, bucket)."""


class UnsafeStoreError(RuntimeError):
    """The object store accepted a second creation of the same object: it ignores conditional writes,
    so concurrent Delta commits would overwrite each other without an error."""


def s3_storage_options(
    endpoint: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    region: str,
    allow_http: bool,
) -> dict[str, str] | None:
    """delta-rs's storage options for an S3 store (``endpoint``: its URL, ``None`` for AWS's own);
    ``None`` when neither an endpoint nor a key is given (local roots, or the environment's own AWS
    settings, which delta-rs and pyarrow read themselves)."""
    if not (endpoint or access_key_id):
        return None
    options = {"AWS_REGION": region, "AWS_ALLOW_HTTP": str(allow_http).lower()}
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
    if access_key_id:
        options["AWS_ACCESS_KEY_ID"] = access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = secret_access_key or ""
    return options


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a local path (no scheme, or ``file://``)."""
    return "://" not in uri or uri.startswith("file://")


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``uri`` and the path within it, configured by delta-rs's
    ``storage_options`` for ``s3://`` URIs (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``), so the code that reads the Delta
    log by file name sees the same store as delta-rs; other URIs as ``pyarrow.fs.FileSystem.from_uri``.
    """
    options = storage_options or {}
    if not uri.startswith("s3://") or not options:
        return pafs.FileSystem.from_uri(uri)
    endpoint = options.get("AWS_ENDPOINT_URL")
    if endpoint:
        # The AWS SDK (in pyarrow) sends trailing checksums (aws-chunked) by default since 2025; S3
        # servers other than AWS's, such as Ceph RGW 16, refuse them (HTTP 411 on every upload). The
        # SDK's own switch turns them off, for this process: checksums only where an operation requires one.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    fs = pafs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint,
        scheme="http" if endpoint and endpoint.startswith("http://") else "https",
    )
    return fs, uri.removeprefix("s3://")


def check_conditional_writes(root: str, storage_options: dict[str, str] | None = None) -> None:
    """Check, once per process and root, that the store under ``root`` refuses to create an object
    that exists (``If-None-Match: *``), as Delta commits need; nothing to check for local roots.

    Creates ``<root>/_probe/create-<uuid>`` twice with obstore (the ``object_store`` crate delta-rs
    commits with, so the same request), expects the second to fail, then deletes it: three requests.

    Raises:
        UnsafeStoreError: the second creation succeeded (the message says what to do).
        StoreAccessError: the store cannot be reached or written (endpoint, credentials, bucket);
            the message names the root, the endpoint and the store's answer.
    """
    key = (root, tuple(sorted((storage_options or {}).items())))
    if is_local(root) or key in _checked:
        return
    options = dict(storage_options or {})
    allow_http = options.pop("AWS_ALLOW_HTTP", "false").lower() == "true"
    # delta-rs's option names (AWS_*): obstore takes them as they are; its typed dicts spell them in lower case.
    store = from_url(root, config=options or None, client_options={"allow_http": allow_http})  # type: ignore[call-overload]
    path = f"_probe/create-{uuid.uuid4().hex}"
    endpoint = options.get("AWS_ENDPOINT_URL", "the default endpoint")
    try:
        obstore.put(store, path, b"first", mode="create")
    except Exception as error:
        answer = " ".join(str(error).split())[:300]
        raise StoreAccessError(f"cannot write to {root} at {endpoint}: {answer}") from error
    try:
        obstore.put(store, path, b"second", mode="create")
    except AlreadyExistsError:
        pass
    else:
        raise UnsafeStoreError(
            f"the object store of {root} ({endpoint}) accepted a second creation of {path}: it ignores "
            "conditional writes (If-None-Match: *), so two Delta commits of the same version would "
            "overwrite each other without an error and acknowledged events would be lost. Refusing to "
            "use it. Use a store that honours them (AWS S3, Ceph RGW 16 and later, MinIO, GCS, Azure), "
            "or whatever sits between (a proxy, a gateway) must pass the If-None-Match header and the "
            "412 answer through."
        )
    finally:
        obstore.delete(store, path)
    with _checked_lock:
        _checked.add(key)
    log.info("object store of %s refuses a second creation (conditional writes honoured)", root)
