"""Sources and their write keys: who may send events, recorded on every row as ``source``.

A source is a name plus the SHA-256 of its write key (the key itself is never stored server
side). Sources come from the sources file (``<data_dir>/sources.json`` by default) and from
``EVENTLAKE_SOURCES``. On first start a ``local`` source is generated with a random key kept in
``<data_dir>/local_write_key`` (mode 0600) for local tools: the replay CLI and ``make up``.

Keys are random 192-bit tokens, so an unsalted SHA-256 is enough to store them (unlike
passwords, they cannot be guessed from a dictionary). ``eventlake-sources add NAME`` creates a
source and prints its key once; a running API picks the new source up at its first request with that key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path

import orjson
from pydantic import TypeAdapter

from warehouse.settings import Settings, SourceConfig

LOCAL_SOURCE = "local"
_STALE_LOCK_S = 30
_SOURCES = TypeAdapter(list[SourceConfig])


def hash_key(write_key: str) -> str:
    """The stored form of a write key: SHA-256 hex of its UTF-8 bytes."""
    return hashlib.sha256(write_key.encode()).hexdigest()


def read_sources_file(path: Path) -> list[SourceConfig]:
    """The sources in ``path`` (``{"sources": [...]}``), or ``[]`` when it does not exist.

    Raises:
        pydantic.ValidationError: the file is not a valid sources file.
    """
    if not path.exists():
        return []
    return _SOURCES.validate_python(orjson.loads(path.read_bytes()).get("sources", []))


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


WRITE_KEY_PREFIX = "elk_"


def new_write_key() -> str:
    """A new random write key: ``elk_`` + 32 URL-safe base64 characters (192 bits).

    The fixed prefix makes keys recognisable to secret scanners and, unlike a bare
    ``secrets.token_urlsafe`` (which starts with ``-`` one time in 64), never looks like a
    command-line option (``eventlake-replay --write-key -abc`` fails in argparse).
    """
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(24)


def add_source(path: Path, name: str, rate_limit: str | None = None) -> str:
    """Create source ``name`` in the sources file and return its new write key (shown once).

    Raises:
        ValueError: a source of that name already exists.
        pydantic.ValidationError: ``name`` is not a valid source name.
    """
    sources = read_sources_file(path)
    if any(source.name == name for source in sources):
        raise ValueError(f"source {name!r} already exists in {path}")
    write_key = new_write_key()
    sources.append(SourceConfig(name=name, write_key_sha256=hash_key(write_key), rate_limit=rate_limit))
    document = {"sources": [source.model_dump(exclude_none=True) for source in sources]}
    _write_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2), 0o600)
    return write_key


def ensure_local_source(settings: Settings) -> str:
    """The local source's write key, generating the source and key on first start.

    Safe to call from several processes at once: the key file is created exclusively and
    whoever loses the race reads the winner's key.
    """
    key_path = settings.local_key_path
    if key_path.exists():
        return key_path.read_text().strip()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    lock = key_path.with_suffix(".lock")
    if lock.exists() and time.time() - lock.stat().st_mtime > _STALE_LOCK_S:
        lock.unlink(missing_ok=True)  # left by a process killed while generating the key
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:  # another process is generating it
        for _ in range(100):
            if key_path.exists():
                return key_path.read_text().strip()
            time.sleep(0.05)
        raise TimeoutError(f"{key_path} was not written by the process holding {lock}") from None
    try:
        write_key = add_source(settings.sources_path, LOCAL_SOURCE)
        _write_atomically(key_path, write_key.encode(), 0o600)
        return write_key
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


class SourceRegistry:
    """Looks up the source a write key belongs to.

    Args:
        sources: sources configured outside the file (``EVENTLAKE_SOURCES``).
        path: the sources file, read now and again when it changes.

    Raises:
        ValueError: two sources share a name or a key hash.
    """

    def __init__(self, sources: list[SourceConfig], path: Path | None = None) -> None:
        self._extra = list(sources)
        self._path = path
        self._mtime = self._file_mtime()
        self._by_hash = self._index(sources + (read_sources_file(path) if path else []))

    @staticmethod
    def _index(sources: list[SourceConfig]) -> dict[str, SourceConfig]:
        by_hash: dict[str, SourceConfig] = {}
        names: set[str] = set()
        for source in sources:
            if source.name in names or source.write_key_sha256 in by_hash:
                raise ValueError(f"source {source.name!r} is configured twice (same name or same key)")
            names.add(source.name)
            by_hash[source.write_key_sha256] = source
        return by_hash

    def _file_mtime(self) -> float | None:
        try:
            return self._path.stat().st_mtime if self._path else None
        except FileNotFoundError:
            return None

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        """Sources from the sources file (re-read when it changes) plus ``settings.sources``."""
        return cls(list(settings.sources), settings.sources_path)

    def authenticate(self, write_key: str) -> SourceConfig | None:
        """The source whose key this is, or ``None`` for an unknown key (constant-time compare).

        An unknown key re-reads the sources file if it changed since it was read, so a source
        added with ``eventlake-sources add`` works without restarting the API.
        """
        digest = hash_key(write_key)
        source = self._by_hash.get(digest)
        if source is None and self._reload_if_changed():
            source = self._by_hash.get(digest)
        if source is None or not hmac.compare_digest(source.write_key_sha256, digest):
            return None
        return source

    def named(self, name: str) -> SourceConfig | None:
        """The source called ``name``, or ``None`` (re-reading the sources file when it changed)."""
        for _ in range(2):
            for source in self._by_hash.values():
                if source.name == name:
                    return source
            if not self._reload_if_changed():
                return None
        return None

    def _reload_if_changed(self) -> bool:
        """Read the sources file again when it changed since it was read; whether it did."""
        if self._path is None or self._file_mtime() == self._mtime:
            return False
        self._mtime = self._file_mtime()
        self._by_hash = self._index(self._extra + read_sources_file(self._path))
        return True
