"""Sources and their write keys: who may send events, recorded on every row as ``source``.

A source is a name plus the SHA-256 of its write key (the key itself is never stored server
side). Sources come from the sources file (``<data_dir>/sources.json`` by default) and from
``EVENTLAKE_SOURCES``. On first start a ``local`` source is generated with a random key kept in
``<data_dir>/local_write_key`` (mode 0600) for local tools: the replay CLI and ``make up``.

Keys are random 192-bit tokens, so an unsalted SHA-256 is enough to store them (unlike
passwords, they cannot be guessed from a dictionary). ``eventlake-sources add NAME`` creates a
source and prints its key once; a running API picks the new source up at its first request with that key.
``eventlake-sources revoke NAME`` removes it; every worker refuses its key within
``EVENTLAKE_SOURCES_REFRESH_MS`` (each looks for changes that often).

Several ingest nodes share their sources through Redis (``EVENTLAKE_REDIS_URL``,
:class:`SharedSources`): sources added there and revocations (of any source, wherever it is
configured) reach every node within the same bounds. Without Redis each node has its own file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

import orjson
import redis
from pydantic import TypeAdapter, ValidationError

from warehouse.settings import Settings, SourceConfig

log = logging.getLogger(__name__)

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


def remove_source(path: Path, name: str) -> bool:
    """Remove source ``name`` from the sources file; whether it was there."""
    sources = read_sources_file(path)
    kept = [source for source in sources if source.name != name]
    if len(kept) == len(sources):
        return False
    document = {"sources": [source.model_dump(exclude_none=True) for source in kept]}
    _write_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2), 0o600)
    return True


class SourcesError(RuntimeError):
    """The sources cannot be read as a whole (two share a name or a key, an entry in Redis is not a
    source, Redis cannot be reached): no key is accepted until they can (the API answers 503)."""


class SharedSources:
    """The sources the ingest nodes share, in Redis: sources added there (hash
    ``eventlake:sources``, name → the source as JSON), revoked key hashes (set
    ``eventlake:sources:revoked``, whatever configured the source) and a version (``…:version``)
    raised by every change, which workers poll (:class:`SourceRegistry`).

    Raises (every method):
        redis.RedisError: Redis cannot be reached or answered an error.
        SourcesError: (:meth:`read`) an entry is not a source.
    """

    KEY = "eventlake:sources"

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def version(self) -> int:
        """The version of the shared sources (0 before any change)."""
        return int(self.redis.get(f"{self.KEY}:version") or 0)

    def read(self) -> tuple[int, list[SourceConfig], set[str]]:
        """The version, the sources added here and the revoked key hashes, read together (MULTI)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(f"{self.KEY}:version")
        pipe.hgetall(self.KEY)
        pipe.smembers(f"{self.KEY}:revoked")
        version, entries, revoked = pipe.execute()
        sources = []
        for name, value in entries.items():
            try:
                sources.append(SourceConfig.model_validate_json(value))
            except ValidationError as error:
                problem = error.errors(include_input=False, include_url=False)[0]["msg"]
                raise SourcesError(
                    f"the entry {name.decode()!r} of Redis' {self.KEY} is not a source: {problem}"
                ) from None
        return int(version or 0), sources, {digest.decode() for digest in revoked}

    def add(self, source: SourceConfig) -> None:
        """Add ``source``.

        Raises:
            ValueError: a source of that name is there already.
        """
        if not self.redis.hsetnx(self.KEY, source.name, source.model_dump_json(exclude_none=True)):
            raise ValueError(f"source {source.name!r} already exists in {self.url}")
        self.redis.incr(f"{self.KEY}:version")

    def revoke(self, source: SourceConfig) -> None:
        """Revoke ``source``'s write key on every node, and forget the source if it was added here."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.KEY, source.name)
        pipe.sadd(f"{self.KEY}:revoked", source.write_key_sha256)
        pipe.incr(f"{self.KEY}:version")
        pipe.execute()


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
        shared: the sources shared through Redis, read now and again when their version changes.
        refresh_s: how often (s) to look for changes (revocations), at a request; an unknown key
            looks at once.

    Fails closed: while the sources cannot be read as a whole, :meth:`authenticate` and
    :meth:`named` raise :class:`SourcesError` (never a key index that may miss a revocation), and a
    key this process saw revoked stays refused even if Redis loses the revocation (a restart
    without persistence).

    Raises:
        SourcesError: (from every method but the constructor) see above.
    """

    def __init__(
        self,
        sources: list[SourceConfig],
        path: Path | None = None,
        shared: SharedSources | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self._extra = list(sources)
        self._path = path
        self.shared = shared
        self._refresh_s = refresh_s
        self._file: tuple[int, int, int] | None = None
        self._version: int | None = None
        self._checked_at = 0.0
        self._by_hash: dict[str, SourceConfig] = {}
        self._revoked: set[str] = set()  # every revocation seen by this process
        self._error: SourcesError | None = None
        self._lock = threading.Lock()  # requests look from worker threads when Redis is shared
        with contextlib.suppress(SourcesError):  # e.g. Redis down at start: calls raise until it answers
            self._reload_if_changed()

    @staticmethod
    def _index(sources: list[SourceConfig], revoked: set[str]) -> dict[str, SourceConfig]:
        by_hash: dict[str, SourceConfig] = {}
        names: set[str] = set()
        for source in sources:
            if source.name in names or source.write_key_sha256 in by_hash:
                raise SourcesError(
                    f"source {source.name!r} is configured twice (same name or same key, in the sources file, "
                    "EVENTLAKE_SOURCES or Redis): no key is accepted until one of them is removed"
                )
            names.add(source.name)
            by_hash[source.write_key_sha256] = source
        return {digest: source for digest, source in by_hash.items() if digest not in revoked}

    def _file_signature(self) -> tuple[int, int, int] | None:
        """The sources file's modification time (ns), size and inode: any write changes one of them."""
        try:
            st = self._path.stat() if self._path else None
        except FileNotFoundError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino)

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        """Sources from the sources file (re-read when it changes), ``settings.sources`` and, with
        ``settings.redis_url``, the shared ones."""
        shared = SharedSources(settings.redis_url) if settings.redis_url else None
        return cls(list(settings.sources), settings.sources_path, shared, settings.sources_refresh_ms / 1000)

    def authenticate(self, write_key: str) -> SourceConfig | None:
        """The source whose key this is, or ``None`` for an unknown or revoked key (constant-time compare).

        An unknown key looks for changes at once (a version read), so a source added with
        ``eventlake-sources add`` works at its first request without restarting the API.
        """
        self._refresh_if_due()
        digest = hash_key(write_key)
        source = self._by_hash.get(digest)
        if source is None and self._reload_if_changed():
            source = self._by_hash.get(digest)
        if source is None or not hmac.compare_digest(source.write_key_sha256, digest):
            return None
        return source

    def names(self) -> list[str]:
        """The names of the sources whose keys are valid now."""
        self._refresh_if_due()
        return [source.name for source in self._by_hash.values()]

    def named(self, name: str) -> SourceConfig | None:
        """The source called ``name``, or ``None`` (looking for changes first when not found)."""
        self._refresh_if_due()
        for _ in range(2):
            for source in self._by_hash.values():
                if source.name == name:
                    return source
            if not self._reload_if_changed():
                return None
        return None

    def check(self) -> None:
        """Look for changes now (readiness).

        Raises:
            SourcesError: the sources cannot be read as a whole.
        """
        self._reload_if_changed()

    def _refresh_if_due(self) -> None:
        if self._error is not None or time.monotonic() - self._checked_at >= self._refresh_s:
            self._reload_if_changed()

    def _reload_if_changed(self) -> bool:
        """Read the sources again when the file or the shared version changed since they were read
        (or the last read failed); whether they did. A failed read leaves nothing marked as read, so
        the next call tries again; until one succeeds every call raises.

        Raises:
            SourcesError: they cannot be read as a whole (see the class).
        """
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        self._checked_at = time.monotonic()
        try:
            signature = self._file_signature()
            version = self.shared.version() if self.shared else None
            if self._error is None and signature == self._file and version == self._version:
                return False
            shared: list[SourceConfig] = []
            if self.shared is not None:
                version, shared, revoked = self.shared.read()
                if self._version is not None and version is not None and version < self._version:
                    log.warning(
                        "the shared sources' version went back from %d to %d: Redis lost its data (persistence "
                        "off?); this process keeps refusing the keys it saw revoked",
                        self._version,
                        version,
                    )
                self._revoked |= revoked
            from_file = read_sources_file(self._path) if self._path else []
            by_hash = self._index(self._extra + from_file + shared, self._revoked)
        except SourcesError as error:
            self._error = error
            raise
        except (redis.RedisError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            where = f"Redis ({self.shared.url.split('@')[-1]})" if self.shared else "the sources file"
            self._error = SourcesError(
                f"the sources cannot be read from {where}: {type(error).__name__}: {error}"[:500]
            )
            raise self._error from error
        self._file, self._version, self._by_hash, self._error = signature, version, by_hash, None
        return True
