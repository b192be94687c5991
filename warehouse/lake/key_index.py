"""A persistent index of one Delta table's unique key, kept in step with the table's change feed.

Silver holds exactly one row per ``event_id``; every micro-batch must know which of its ids silver
already has (and their ``content_hash``, for the consistency check). Reading that from the table
scans every ``event_id`` of silver (random ids defeat file statistics): a cost that grows with
history. The index answers it with point lookups in an embedded RocksDB database (rocksdict; a
bloom filter per file makes a miss cost no read), at a cost that stays flat as the table grows.

The protocol (what makes it safe to trust):

* The index records the table version it covers and the table's id (its Delta metadata id). It is
  only ever written after the table committed, so it never holds a key the table lacks at that
  version; every change up to that version is in it.
* :meth:`KeyIndex.sync` brings it to the table's latest version before a lookup: the versions after
  the covered one are applied from the change data feed, one version at a time (its deletes, then
  its inserts: a rewrite deletes and re-inserts a key in one commit), each version atomically
  together with the new covered version (a RocksDB write batch, WAL-logged). A crash anywhere leaves
  the index at some covered version; the next sync goes on from there.
* When the feed cannot serve the range (its log entries expired, a table re-created under the same
  path, more than ``max_feed_versions`` versions behind, or no index yet), the index is rebuilt from
  the table as of its latest version, streamed batch by batch.
* A tiered table (:attr:`warehouse.lake.tables.TableDef.tiered`) is indexed across both tiers: a
  move to the cold tier is no change to the hot table's feed (a lifecycle commit), so its keys stay;
  the cold table's own version and id are covered too, and its changes applied (every commit, moves
  included: a partition rewritten by a move deletes and re-inserts its keys; retention and erasure
  delete them). A rebuild reads both tiers.
* Callers serialize the table's writers with the lookup (silver has one writer at a time, the runs
  of one code location): a commit between :meth:`sync` and the caller's append would go unseen.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import DeltaError
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from warehouse.lake.history import change_stream, commit_rows
from warehouse.lake.store import Lake, arrow_dataset
from warehouse.lake.tables import TableDef

log = logging.getLogger(__name__)


class IndexBusyError(RuntimeError):
    """Another process holds the index's database (RocksDB admits one process at a time)."""


_META = b"m"  # the one metadata entry: {"version": covered version, "table_id": Delta metadata id, "format"}
_KEY = b"k"  # prefix of every indexed key (so no key can collide with the metadata entry)
_KEYS_END = b"l"  # the first key after every indexed one (delete_range's end)
_FORMAT = 3  # values b"v<value>" or b"n" (NULL), the cold tier covered; an index of another format is rebuilt
_NULL = b"n"


class KeyIndex:
    """``key -> value`` of every row of ``table`` (both string columns), in RocksDB at ``path``.

    Open it with :meth:`open` (or :func:`shared_key_index`, kept open in the process); one process
    holds a RocksDB database at a time. A sync more than ``max_feed_versions`` versions or
    ``max_feed_rows`` added rows behind (a rewrite of the whole table) rebuilds from the table,
    streamed, instead of replaying the feed version by version in memory.

    Raises (on open):
        IndexBusyError: another process holds the database.
        Exception: (rocksdict's) the database is unreadable.
    """

    def __init__(
        self,
        path: Path,
        lake: Lake,
        table: TableDef,
        key: str,
        value: str,
        max_feed_versions: int = 1000,
        max_feed_rows: int = 1_000_000,
    ) -> None:
        self.path = path
        self.lake = lake
        self.table = table
        self.key = key
        self.value = value
        self.max_feed_versions = max_feed_versions
        self.max_feed_rows = max_feed_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table_options = BlockBasedOptions()
        table_options.set_bloom_filter(10, False)  # ~1% false positives: a missing key costs no read
        table_options.set_block_cache(Cache(64 * 1024 * 1024))
        options.set_block_based_table_factory(table_options)
        self._lock = threading.RLock()
        try:
            self._db = Rdict(str(path), options)
        except Exception as error:
            if "lock" in str(error).lower():
                raise IndexBusyError(f"{path} is held by another process") from error
            raise

    @classmethod
    def open(cls, path: Path, lake: Lake, table: TableDef, key: str, value: str) -> KeyIndex:
        """The index at ``path``; a database left unreadable (a crash during RocksDB's own recovery,
        a foreign folder) is removed first, and the next :meth:`sync` rebuilds it from the table.

        Raises:
            IndexBusyError: another process holds the database.
        """
        try:
            return cls(path, lake, table, key, value)
        except IndexBusyError:
            raise
        except Exception as error:
            log.warning("%s index at %s unreadable (%s); rebuilding", table.name, path, error)
            shutil.rmtree(path, ignore_errors=True)
            return cls(path, lake, table, key, value)

    def close(self) -> None:
        """Flush and release the database (its lock)."""
        self._db.close()

    def covered(self) -> tuple[Covered, Covered | None] | None:
        """``(hot, cold)`` versions and table ids the index covers (cold: None when the table has no
        cold tier yet); ``None`` when it was never built."""
        meta = self._db.get(_META)
        data = json.loads(meta) if meta is not None else {}
        if data.get("format") != _FORMAT:
            return None
        cold = data.get("cold")
        return Covered(*data["hot"]), Covered(*cold) if cold else None

    def sync(self) -> int:
        """Bring the index to the table's latest version (and its cold tier's); returns that version
        (-1: no table yet). Thread-safe (one sync or lookup at a time).

        Raises:
            deltalake.exceptions.DeltaError: the table cannot be read (the index stays as it was).
        """
        with self._lock:
            return self._sync()

    def _latest(self) -> tuple[Covered | None, Covered | None]:
        """The hot table's and its cold tier's latest ``(version, id)`` (None: absent)."""
        tiers = [self.lake, self.lake.cold if self.table.tiered and self.lake.cold is not None else None]
        opened = [tier.open(self.table) if tier is not None else None for tier in tiers]
        hot, cold = (Covered(dt.version(), str(dt.metadata().id)) if dt is not None else None for dt in opened)
        return hot, cold

    def _sync(self) -> int:
        hot, cold = self._latest()
        if hot is None:
            return -1
        covered = self.covered()
        if covered == (hot, cold):
            return hot.version
        if (
            covered is None
            or not _follows(covered[0], hot, self.max_feed_versions)
            or (covered[1] is not None and not _follows(covered[1], cold, self.max_feed_versions))
        ):
            self._rebuild(hot, cold)
            return hot.version
        try:
            if (
                sum(rows for _, rows in commit_rows(self.lake, self.table, covered[0].version, hot.version))
                > self.max_feed_rows
            ):
                self._rebuild(hot, cold)
                return hot.version
            for version in range(covered[0].version + 1, hot.version + 1):
                self._apply(Covered(version, hot.table_id), covered[1])
            if cold is not None:
                start = covered[1].version if covered[1] is not None else -1
                for version in range(start + 1, cold.version + 1):
                    self._apply_cold(hot, Covered(version, cold.table_id))
        # The feed is gone: expired log entries, or files a vacuum or a purge removed (delta-rs reports
        # those as ArrowInvalid while the batches are read).
        except (DeltaError, OSError, pa.ArrowInvalid):
            log.warning(
                "%s index: the change feed after v%d cannot be read; rebuilding", self.table.name, covered[0].version
            )
            self._rebuild(hot, cold)
        return hot.version

    def lookup(self, keys: pa.Array) -> pa.Table:
        """``(key, value)`` of the ``keys`` in the index (strings; nulls and absent keys left out),
        one row per distinct key found. Call :meth:`sync` first."""
        distinct = pc.unique(keys.cast(pa.string())).drop_null().to_pylist()
        with self._lock:
            found: list[bytes | None] = self._db.get([_KEY + k.encode() for k in distinct]) or []
        hits = [(k, None if v == _NULL else v[1:].decode()) for k, v in zip(distinct, found, strict=True) if v]
        keys, values = [k for k, _ in hits], [v for _, v in hits]
        return pa.table({self.key: pa.array(keys, pa.string()), self.value: pa.array(values, pa.string())})

    def _meta(self, hot: Covered, cold: Covered | None) -> bytes:
        return json.dumps({"hot": list(hot), "cold": list(cold) if cold else None, "format": _FORMAT}).encode()

    def _put_all(self, batch: WriteBatch, rows: pa.Table | pa.RecordBatch) -> int:
        """Add ``rows``' keys (NULL keys skipped: nothing can match them) to ``batch``; how many."""
        rows = rows.filter(pc.is_valid(rows.column(self.key)))
        values = rows.column(self.value).to_pylist()
        for key, value in zip(rows.column(self.key).to_pylist(), values, strict=True):
            batch.put(_KEY + key.encode(), _NULL if value is None else b"v" + value.encode())
        return rows.num_rows

    def _apply(self, hot: Covered, cold: Covered | None) -> None:
        """Apply one hot version's changes and move the covered version, in one atomic write batch."""
        feed = change_stream(
            self.lake, self.table, hot.version - 1, hot.version, ("delete", "insert"), columns=[self.key, self.value]
        ).read_all()
        self._write_changes(feed, hot, cold)

    def _apply_cold(self, hot: Covered, cold: Covered) -> None:
        """Apply one cold version's changes (a move's rows, a rewritten partition's, the keys its
        retention or an erasure deleted), moves included, and move the covered cold version, in one
        atomic write batch."""
        assert self.lake.cold is not None
        feed = change_stream(
            self.lake.cold,
            self.table,
            cold.version - 1,
            cold.version,
            ("delete", "insert"),
            columns=[self.key, self.value],
            lifecycle=True,
        ).read_all()
        self._write_changes(feed, hot, cold)

    def _write_changes(self, feed: pa.Table, hot: Covered, cold: Covered | None) -> None:
        """Apply one version's ``feed`` (its deletes, then its inserts) with the new covered versions,
        in one atomic write batch."""
        batch = WriteBatch(raw_mode=True)
        changes = feed["_change_type"]
        for key in feed.filter(pc.equal(changes, "delete"))[self.key].drop_null().to_pylist():
            batch.delete(_KEY + key.encode())
        self._put_all(batch, feed.filter(pc.equal(changes, "insert")))
        batch.put(_META, self._meta(hot, cold))
        self._db.write(batch)

    def _rebuild(self, hot: Covered, cold: Covered | None) -> None:
        """Empty the index and load every row of the table as of ``hot``'s version (both tiers, a
        fresh read of that version, no process cache: the table may have been created again under
        the same path), then mark it covered. The covered version goes first and comes back last: a
        crash midway leaves none, so the next sync starts over. The database stays open (and locked)
        throughout."""
        log.info("%s index: rebuilding from the table at v%d", self.table.name, hot.version)
        self._db.delete(_META)
        self._db.delete_range(_KEY, _KEYS_END)
        dt = self.lake.open(self.table, version=hot.version)
        if dt is None:
            raise DeltaError(f"{self.table.name} v{hot.version} disappeared during the rebuild")
        sources = [arrow_dataset(dt)]
        if cold is not None and self.lake.cold is not None:
            cold_dt = self.lake.cold.open(self.table, version=cold.version)
            if cold_dt is None:
                raise DeltaError(f"cold {self.table.name} v{cold.version} disappeared during the rebuild")
            sources.append(arrow_dataset(cold_dt))
        rows = 0
        for source in sources:  # a key both tiers hold (a move in flight) is the same row: put twice
            for record_batch in source.to_batches(columns=[self.key, self.value]):
                batch = WriteBatch(raw_mode=True)
                rows += self._put_all(batch, record_batch)
                self._db.write(batch)
        self._db.compact_range(None, None)  # one sorted run: lookups right after a bulk load stay fast
        self._db.put(_META, self._meta(hot, cold))
        self._db.flush()
        log.info("%s index: %d keys at v%d", self.table.name, rows, hot.version)


class Covered(NamedTuple):
    """A table version the index covers, and the table's Delta metadata id."""

    version: int
    table_id: str


def _follows(covered: Covered, latest: Covered | None, max_versions: int) -> bool:
    """Whether the index at ``covered`` can catch up with ``latest`` from the change feed: the same
    table, at most ``max_versions`` versions behind."""
    return (
        latest is not None
        and covered.table_id == latest.table_id
        and 0 <= latest.version - covered.version <= max_versions
    )


#: This process's open indexes by path, least recently used first (see :func:`shared_key_index`).
_SHARED: OrderedDict[Path, KeyIndex] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 2


def shared_key_index(path: Path, lake: Lake, table: TableDef, key: str, value: str) -> KeyIndex:
    """This process's :class:`KeyIndex` at ``path``, opened at the first call and kept open: a
    RocksDB database loads every file's bloom filter and index block when it opens (~1.2 bytes per
    key: 60 MB at 50M keys), so opening it per micro-batch cost more as the table grew (73 ms -> 145 ms
    per 10,000 lookups from 1M to 50M keys). At most two are kept open (tests open many); the least
    recently used one is closed. Its lock is released when the process exits.

    Raises:
        IndexBusyError: another process holds the database (try again later, or read the table).
    """
    with _SHARED_LOCK:
        index = _SHARED.get(path)
        if index is not None and index.lake.root == lake.root:
            _SHARED.move_to_end(path)
            return index
        if index is not None:
            _SHARED.pop(path).close()
        index = KeyIndex.open(path, lake, table, key, value)
        _SHARED[path] = index
        while len(_SHARED) > _SHARED_MAX:
            _SHARED.popitem(last=False)[1].close()
        return index
