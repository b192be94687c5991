"""Where lake tables live and how they are opened, appended to, merged and read: every table under one
lake root (a local path or any URI delta-rs supports), read through ``deltalake`` → Arrow (DuckDB cannot
load its delta extension here)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import Schema as DeltaSchema
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from warehouse.lake.object_store import check_conditional_writes, filesystem, is_local
from warehouse.lake.tables import WATERMARKS, TableDef

# pyarrow.dataset is imported where it is used: it imports pandas (~1 s), which a process that only
# reads table versions (eventlake-status, the ingest API's readiness) need not pay.
if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from warehouse.lake.maintenance import AutoCompactor

log = logging.getLogger(__name__)

#: delta-rs file pruning filters, ANDed: ``(column, op, value)``, op one of ``=``, ``<``, ``<=``, ``>``, ``>=``…
FileFilter = tuple[tuple[str, str, object], ...]

#: Concurrent writers to one table may race on a commit; delta-rs raises CommitFailedError
#: without corrupting anything, so a few jittered retries are the documented remedy.
retry_commit = retry(
    retry=retry_if_exception_type(CommitFailedError),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.05, max=2),
    reraise=True,
)


#: A kept table handle is opened again (from its last checkpoint) after this many commits: delta-rs's
#: default checkpoint interval (``delta.checkpointInterval``).
REOPEN_AFTER_VERSIONS = 100


class Lake:
    """The Delta tables under one lake root.

    Tables written or read at their latest version stay open in the ``Lake`` object: a later use
    reads only the log entries committed since (``update_incremental``), other processes' commits
    included, and the table is opened again (from its last checkpoint) once it moved
    :data:`REOPEN_AFTER_VERSIONS` past the version it was opened at: delta-rs keeps each commit
    read incrementally as a batch of its own, and an append on a handle kept 3,000 commits cost
    192 ms, against 33 ms reopened every 100 (both one file per commit; the rest of an append's
    cost follows the table's file count, which compaction bounds). A table is created or migrated
    (:meth:`ensure`) once per ``Lake``, at its first write (it cost an append 35 ms at 50 versions
    and 256 ms at 3,000, re-opened on every commit: bench/bench_lake_append.py). Thread-safe (one
    lock per ``Lake``; writers are sequential anyway).

    A lake with a ``cold`` tier (:mod:`warehouse.lake.tiers`) reads its tiered tables
    (:attr:`TableDef.tiered`: silver) across both tiers (:meth:`dataset`); every write goes to
    this (the hot) root.

    Args:
        root: lake root, e.g. ``/abs/data/lake`` or ``s3://bucket/lake``.
        storage_options: passed to delta-rs for object stores (credentials, region…;
            :mod:`warehouse.lake.object_store`).
        compactor: auto compaction of the partitions this ``Lake`` appends to
            (:class:`warehouse.lake.maintenance.AutoCompactor`); ``None``: none (one-off writers).
        cold: the cold tier: a ``Lake`` over the cold root, holding the tiered tables' old partitions.
        writer: the Parquet writer properties of every file this ``Lake`` writes (the cold tier's
            higher compression level); ``None``: delta-rs's defaults.
        target_file_bytes: the size of the files its writes and compactions aim at; ``None``: delta-rs's.

    Raises:
        warehouse.lake.object_store.StoreAccessError: ``root``'s object store cannot be reached or written.
        warehouse.lake.object_store.UnsafeStoreError: ``root`` is on an object store that ignores
            conditional writes (checked once per process and root,
            :func:`warehouse.lake.object_store.check_conditional_writes`).
    """

    def __init__(
        self,
        root: str,
        storage_options: dict[str, str] | None = None,
        compactor: AutoCompactor | None = None,
        *,
        cold: Lake | None = None,
        writer: WriterProperties | None = None,
        target_file_bytes: int | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.storage_options = storage_options
        check_conditional_writes(self.root, storage_options)
        self.compactor = compactor
        self.cold = cold
        self.writer = writer
        self.target_file_bytes = target_file_bytes
        self._open: dict[str, tuple[DeltaTable, int]] = {}  # by table name: the handle, the version opened at
        self._ensured: set[str] = set()  # tables created or migrated through this Lake
        self._lock = threading.RLock()

    def uri(self, table: TableDef) -> str:
        """The table's URI: ``<root>/<table.path>``."""
        return f"{self.root}/{table.path}"

    @property
    def options_key(self) -> tuple[tuple[str, str], ...]:
        """The storage options as a hashable key of the per-version caches."""
        return tuple(sorted((self.storage_options or {}).items()))

    def local_dir(self, kind: str) -> Path:
        """This machine's folder for the lake's local state of one ``kind`` (``locks``, ``index``),
        created when missing: ``<root>/_<kind>`` for a local lake; for an object store, under the
        temporary folder, keyed by the root (each machine keeps its own)."""
        if not is_local(self.root):
            digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
            folder = Path(tempfile.gettempdir()) / f"eventlake-{kind}" / digest
        else:
            folder = Path(self.root.removeprefix("file://")) / f"_{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @retry_commit
    def ensure(self, table: TableDef, properties: dict[str, str] | None = None) -> DeltaTable:
        """Create the table if it does not exist yet (idempotent, safe across processes).

        A table created by an older release that lacks columns added at the end of ``table``'s
        schema gets them added (nullable; its existing rows read NULL), and one that lacks
        ``table.properties`` (e.g. its statistics columns) gets them set. No rewrite of data.
        ``properties``: further table properties set only while the table has no commit but its
        creation, so they hold for every row it will get (e.g. which scrub rules wrote them).

        Raises:
            ValueError: the table has columns ``table`` does not declare, or in another order.
        """
        dt = DeltaTable.create(
            self.uri(table),
            schema=table.schema,
            partition_by=list(table.partition_by) or None,
            mode="ignore",
            configuration=table.properties or None,
            storage_options=self.storage_options,
        )
        columns = [field.name for field in dt.schema().fields]
        expected = table.schema.names
        if columns != expected:
            if columns != expected[: len(columns)]:
                raise ValueError(f"{table.name} has columns {columns}, expected {expected}")
            added = pa.schema([table.schema.field(name) for name in expected[len(columns) :]])
            dt.alter.add_columns(DeltaSchema.from_arrow(added).fields)
            log.info("%s: added columns %s", table.name, added.names)
        wanted = {**table.properties, **(properties or {})} if dt.version() == 0 else table.properties
        configuration = dt.metadata().configuration
        missing = {key: value for key, value in wanted.items() if configuration.get(key) != value}
        if missing:
            dt.alter.set_table_properties(missing, raise_if_not_exists=False)
            log.info("%s: set table properties %s", table.name, missing)
        with self._lock:
            self._open[table.name] = (dt, dt.version())
            self._ensured.add(table.name)
        return dt

    def _writable(self, table: TableDef) -> DeltaTable:
        """``table`` open at its latest version, created or migrated first if this ``Lake`` has not
        yet (:meth:`ensure`). Call with the lock held."""
        if table.name not in self._ensured:
            return self.ensure(table)
        return self._current(table) or self.ensure(table)

    def _current(self, table: TableDef) -> DeltaTable | None:
        """``table`` at its latest version: the kept handle brought up to date, or opened now (and
        kept); ``None`` when it does not exist. Call with the lock held."""
        kept = self._open.get(table.name)
        if kept is not None:
            dt, opened_at = kept
            try:
                dt.update_incremental()
                if dt.version() - opened_at < REOPEN_AFTER_VERSIONS:
                    return dt
            except Exception:  # e.g. the table was deleted meanwhile: open it again
                log.debug("%s: reopening", table.name, exc_info=True)
                self._forget(table)
        opened = self.open(table)
        if opened is not None:
            self._open[table.name] = (opened, opened.version())
        return opened

    @contextmanager
    def rewrite_lock(self, table: TableDef, blocking: bool = True) -> Iterator[bool]:
        """Hold the table's rewrite lock: at most one compaction or overwrite of a table at a time,
        across the processes of this machine (an exclusive ``flock`` on ``<root>/_locks/<table>.lock``
        for a local lake; under the temporary folder, keyed by the root, for an object store, where it
        fences this machine's processes only). Yields whether it is held (``blocking=False``: False
        at once when another holder has it).

        Why: delta-rs 1.6 lets a commit that adds no data (a compaction) pass its conflict check
        against a concurrent commit that removed the same files (delta-rs PR #3982): two
        compactions of the same files both committed, and every row of them was then stored twice
        (a soak's bronze held each event ~10 times); a compaction beside an overwrite would bring
        back the rows the overwrite removed. Appends remove nothing and need no lock.
        """
        with (self.local_dir("locks") / f"{table.name}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _forget(self, table: TableDef) -> None:
        """Drop the kept handle (after a failed write its state is unknown)."""
        self._open.pop(table.name, None)
        self._ensured.discard(table.name)

    def _write(
        self,
        table: TableDef,
        rows: pa.Table,
        metadata: dict[str, str] | None,
        predicate: str | None = None,
        *,
        append: bool,
        transaction: tuple[str, int] | None = None,
    ) -> int:
        """One ``write_deltalake`` of ``rows`` (cast to the schema) on the kept handle, an append or an
        overwrite (of the rows matching ``predicate``, if given); its version."""
        data = rows.select(table.schema.names).cast(table.schema)
        commit = commit_properties(metadata, transaction)
        with self._lock:
            dt = self._writable(table)
            try:
                writer = self.writer or WriterProperties()
                if append:
                    write_deltalake(
                        dt,
                        data,
                        mode="append",
                        commit_properties=commit,
                        writer_properties=writer,
                        target_file_size=self.target_file_bytes,
                    )
                else:
                    with self.rewrite_lock(table):  # never beside a compaction (see rewrite_lock)
                        dt.update_incremental()
                        write_deltalake(
                            dt,
                            data,
                            mode="overwrite",
                            predicate=predicate,
                            commit_properties=commit,
                            writer_properties=writer,
                            target_file_size=self.target_file_bytes,
                        )
            except Exception:
                self._forget(table)
                raise
            if append and self.compactor is not None:
                self.compactor.after_write(self, table, dt, data)
            return dt.version()  # the handle is advanced to this write's own commit

    def open(self, table: TableDef, version: int | None = None) -> DeltaTable | None:
        """Open the table (at ``version`` if given), or ``None`` when it does not exist."""
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def probe(self, table: TableDef) -> None:
        """Check that ``table`` can be opened with the expected columns and the lake root written.

        A readiness probe: appends would fail if any of this does not hold.

        Writes and deletes a small file under ``<root>/_probe/`` through pyarrow's filesystem
        for the root's URI and the lake's storage options (:func:`filesystem`).

        Raises:
            TableNotFoundError: the table does not exist.
            ValueError: the table's columns differ from ``table.schema``.
            OSError: (or another pyarrow/delta-rs error) the storage cannot be read or written.
        """
        dt = self.open(table)
        if dt is None:
            raise TableNotFoundError(f"{self.uri(table)} does not exist")
        columns = [field.name for field in dt.schema().fields]
        if columns != table.schema.names:  # e.g. a table left by an older version: every append would fail
            raise ValueError(f"{table.name} has columns {columns}, expected {table.schema.names}")
        fs, base = filesystem(self.root, self.storage_options)
        probe_dir = f"{base}/_probe"
        fs.create_dir(probe_dir)
        probe = f"{probe_dir}/{uuid.uuid4().hex}"
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)

    def version(self, table: TableDef) -> int | None:
        """Current Delta version of the table, or ``None`` when it does not exist."""
        with self._lock:
            dt = self._current(table)
            return None if dt is None else dt.version()

    def transaction_version(self, table: TableDef, app_id: str) -> int | None:
        """The version of the last application transaction ``app_id`` committed to ``table`` (see
        :func:`commit_properties`), ``None`` when it has none or the table does not exist."""
        with self._lock:
            dt = self._current(table)
            return None if dt is None else dt.transaction_version(app_id)

    @retry_commit
    def append(
        self,
        table: TableDef,
        rows: pa.Table,
        metadata: dict[str, str] | None = None,
        transaction: tuple[str, int] | None = None,
    ) -> int:
        """Append ``rows`` (cast to the table schema) in one commit; returns that commit's version.

        Creates the table first when needed, with its partitioning and change data feed.
        ``metadata``: the commit's custom metadata; ``transaction``: an application transaction
        ``(app id, version)`` the commit records (:func:`commit_properties`).

        Raises:
            pyarrow.ArrowInvalid: when ``rows`` cannot be cast to the table schema.
            deltalake.exceptions.DeltaError: when the commit fails (after retries on conflicts).
        """
        # Through ensure() at a first write: never let it create a table without its properties.
        return self._write(table, rows, metadata, append=True, transaction=transaction)

    def insert_new(
        self, table: TableDef, rows: pa.Table, key: str = "event_id", existing: pa.Array | None = None
    ) -> int:
        """Append the rows whose ``key`` is not in the table yet (global, all partitions).

        ``rows`` must already be unique by ``key``. ``existing``: the keys of ``rows`` already in
        the table, when the caller just read them (saves a second scan). Returns how many rows
        were appended (no commit when none). An anti-join plus append rather than a Delta MERGE: delta-rs's merge
        writes string columns as Arrow string_view, which pyarrow's filter kernels cannot compare,
        so readers' string predicates would fail on those files. Callers are serialized (one
        pipeline run at a time); that is what makes check-then-append safe.
        """
        with self._lock:
            self._writable(table)
        if rows.num_rows == 0:
            return 0
        if existing is None:
            import pyarrow.dataset as pads  # noqa: PLC0415 (see the module's imports)

            existing = self.dataset(table).to_table(columns=[key], filter=pads.field(key).isin(rows[key]))[key]
        new = rows.filter(pc.invert(pc.is_in(rows[key], existing)))
        if new.num_rows:
            self.append(table, new)
        return new.num_rows

    @retry_commit
    def replace_where(
        self,
        table: TableDef,
        rows: pa.Table,
        predicate: str,
        metadata: dict[str, str] | None = None,
        transaction: tuple[str, int] | None = None,
    ) -> int:
        """Atomically replace the rows matching ``predicate`` with ``rows`` (one commit).

        Delta's ``replaceWhere``: every row of ``rows`` must match ``predicate`` (a delta-rs SQL
        filter such as ``"event_date >= '2024-01-01' and event_date <= '2024-01-31'"``).
        ``metadata`` and ``transaction``: as for :meth:`append`. Returns the new version. Callers are
        serialized with the table's other writers (runs are): ``rows`` were computed from the table
        as it was.

        Raises:
            deltalake.exceptions.DeltaError: a row outside the predicate, or the commit failed.
        """
        return self._write(table, rows, metadata, predicate, append=False, transaction=transaction)

    @retry_commit
    def overwrite(self, table: TableDef, rows: pa.Table, metadata: dict[str, str] | None = None) -> int:
        """Replace the whole table with ``rows`` in one commit (readers of older versions keep
        theirs); returns the new version.

        Raises:
            pyarrow.ArrowInvalid: when ``rows`` cannot be cast to the table schema.
            deltalake.exceptions.DeltaError: when the commit fails (after retries on conflicts).
        """
        return self._write(table, rows, metadata, append=False)

    @retry_commit
    def delete_where(
        self,
        table: TableDef,
        predicate: str,
        metadata: dict[str, str] | None = None,
        check: Callable[[DeltaTable], None] | None = None,
        transaction: tuple[str, int] | None = None,
    ) -> int:
        """Delete the rows matching ``predicate`` (a delta-rs SQL filter) in one commit; returns
        its version. A predicate on partition columns only removes whole files (no data rewritten).

        Holds the table's rewrite lock (:meth:`rewrite_lock`): a compaction of the same files meanwhile
        would bring the rows back. ``check``: called with the table at its latest version under that
        lock, before the delete; it raises to cancel it (e.g. the partition changed since it was copied).
        ``metadata`` and ``transaction``: as for :meth:`append`.

        Raises:
            deltalake.exceptions.DeltaError: the commit failed (after retries on conflicts: a
                concurrent append to the same files; each retry evaluates ``predicate`` and ``check``
                again on the latest version).
            Exception: whatever ``check`` raised (nothing deleted).
        """
        commit = commit_properties(metadata, transaction)
        with self._lock, self.rewrite_lock(table):
            dt = self._writable(table)
            try:
                dt.update_incremental()
                if check is not None:
                    check(dt)
                dt.delete(predicate, writer_properties=self.writer, commit_properties=commit)
            except Exception:
                self._forget(table)
                raise
            return dt.version()

    def dataset(
        self, table: TableDef, version: int | None = None, files: FileFilter = (), *, cold: bool = True
    ) -> pads.Dataset:
        """The table as a pyarrow dataset (frozen at ``version``, default latest).

        An empty dataset of the right schema when the table does not exist yet. A given version
        never changes, so its dataset is built once per process (:func:`_frozen_dataset`): every
        gold mart of a run reads the same silver version. ``files`` (with ``version``): delta-rs
        tuple filters, ANDed, that choose the files before the dataset is built, e.g.
        ``(("event_date", ">=", day),)``: exact on partition columns, by file min/max statistics on
        others (rows still need filtering). Building a dataset costs time per file (about 5 ms:
        each file's statistics become an expression), so a reader of a few partitions passes them
        here rather than filtering the whole table's dataset, whose cost grows with history.

        A tiered table (:attr:`TableDef.tiered`) of a lake with a cold tier is read across both
        tiers (``cold=False``: this tier only): the hot table (as of ``version``) and the cold one
        (its latest version) as one union dataset, every row once (:func:`tier_union`).
        """
        across = cold and table.tiered and self.cold is not None
        if across and version is None:
            # One hot version for its rows and for the partitions both tiers hold, chosen before the
            # cold tier is opened: a move between the two would otherwise show a day twice.
            version = self.version(table)
        hot = self._hot_dataset(table, version, files)
        if not across or self.cold is None:
            return hot
        return tier_union(self, self.cold, table, version, files, hot)

    def _hot_dataset(self, table: TableDef, version: int | None, files: FileFilter) -> pads.Dataset:
        """This tier's dataset of :meth:`dataset`."""
        import pyarrow.dataset as pads  # noqa: PLC0415 (see the module's imports)

        if version is not None:
            try:
                return _frozen_dataset(self.uri(table), version, self.options_key, files)
            except TableNotFoundError:
                return pads.dataset(table.schema.empty_table())
        with self._lock:
            dt = self._current(table)
            if dt is None:
                return pads.dataset(table.schema.empty_table())
            return arrow_dataset(dt, files)

    def watermark(self, consumer: str, upstream: str) -> int:
        """Last upstream version ``consumer`` fully processed, or -1 when it never ran."""
        import pyarrow.dataset as pads  # noqa: PLC0415 (see the module's imports)

        dataset = self.dataset(WATERMARKS)
        rows = dataset.to_table(
            columns=["upstream_version"],
            filter=(pads.field("consumer") == consumer) & (pads.field("upstream") == upstream),
        )
        if rows.num_rows == 0:
            return -1
        return int(pc.max(rows["upstream_version"]).as_py())

    def advance_watermark(self, consumer: str, upstream: str, version: int, run_id: str) -> None:
        """Record that ``consumer`` has processed ``upstream`` up to ``version``: one commit that
        replaces the pair's row, so the table holds one row per pair and reading it stays flat
        (appending a row per micro-batch grew it by ~17,000 rows and files a day)."""
        row = pa.table(
            {
                "consumer": [consumer],
                "upstream": [upstream],
                "upstream_version": [version],
                "run_id": [run_id],
                "committed_at": [datetime.now(UTC)],
            }
        )
        self.replace_where(
            WATERMARKS, row, f"consumer = {sql_literal(consumer)} and upstream = {sql_literal(upstream)}"
        )
        log.info("watermark %s <- %s advanced to version %d", consumer, upstream, version)


def commit_properties(
    metadata: dict[str, str] | None, transaction: tuple[str, int] | None = None
) -> CommitProperties | None:
    """A commit's properties: its custom ``metadata`` (``commitInfo``) and an application transaction
    ``(app id, version)`` (a ``txn`` action: the Delta protocol's "Transaction Identifiers", kept in
    the table's state and checkpoints and read back with ``DeltaTable.transaction_version``), or
    ``None`` when it has neither."""
    if not metadata and transaction is None:
        return None
    return CommitProperties(
        custom_metadata=metadata or None,
        app_transactions=None if transaction is None else [Transaction(*transaction)],
    )


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal of a delta-rs predicate."""
    return "'" + text.replace("'", "''") + "'"


def in_predicate(column: str, values: list[str]) -> str:
    """A delta-rs predicate: ``column`` is one of ``values`` (string literals)."""
    return f"{column} in ({', '.join(sql_literal(value) for value in values)})"


@lru_cache(maxsize=8)
def snapshot(uri: str, version: int, storage_options: tuple[tuple[str, str], ...]) -> DeltaTable:
    """The Delta table at ``uri`` as of ``version``: immutable, so loaded once per process and shared
    by the datasets and change feeds read at that version. Loading replays the log (measured: 40 ms
    for a table of 1,800 files against 9 ms for 180), which each gold mart of a run paid again.
    A table deleted and created again at the same URI while the process runs is not noticed (its
    versions are taken for the old table's).

    Raises:
        TableNotFoundError: there is no table at ``uri``.
    """
    return DeltaTable(uri, version=version, storage_options=dict(storage_options) or None)


def arrow_dataset(dt: DeltaTable, files: FileFilter = ()) -> pads.Dataset:
    """``dt`` as a pyarrow dataset of the files ``files`` chooses (delta-rs tuple filters, ANDed).

    A local table is read through pyarrow's own local filesystem: through delta-rs's default, a
    Python-implemented filesystem, a threaded scan left I/O tasks running after it returned, and a
    process that exited then aborted ("terminate called without an active exception", exit 134: 11
    of 12 short runs of ``DeltaTable.to_pyarrow_dataset().to_table()`` on deltalake 1.6 and pyarrow
    26). Other stores keep delta-rs's filesystem, which carries their storage options.
    """
    uri = dt.table_uri
    local = uri.startswith("file://") or "://" not in uri
    filesystem = None
    if local:
        root = uri.removeprefix("file://").rstrip("/") or "/"
        filesystem = pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())
    return dt.to_pyarrow_dataset(filesystem=filesystem, file_pruning_predicate=list(files) or None)


@lru_cache(maxsize=32)
def _frozen_dataset(
    uri: str, version: int, storage_options: tuple[tuple[str, str], ...], files: FileFilter = ()
) -> pads.Dataset:
    """The pyarrow dataset of the Delta table at ``uri`` as of ``version`` (immutable, so cached).

    Raises:
        TableNotFoundError: there is no table at ``uri``.
    """
    return arrow_dataset(snapshot(uri, version, storage_options), files)


def tier_union(
    hot_lake: Lake, cold_lake: Lake, table: TableDef, version: int | None, files: FileFilter, hot: pads.Dataset
) -> pads.Dataset:
    """``hot`` (``table`` in ``hot_lake`` as of ``version``, None: latest, chosen by ``files``) and
    the same files of ``table``'s latest version in ``cold_lake``, as one union dataset holding
    every row once.

    A partition is in both tiers while its move is in flight (:func:`warehouse.lake.tiers.move_partition`
    copied it to cold and has not yet deleted it from hot, or crashed in between), and when late
    rows reached hot after the partition moved. In the first case both tiers hold the same keys:
    the cold copies of keys hot holds are left out (the partition's other cold rows read in
    memory), so a reader never sees a row twice whatever step a move is at. Cached per process
    for a given pair of versions.
    """
    with cold_lake._lock:  # noqa: SLF001 (the same class's kept handle)
        cold_dt = cold_lake._current(table)  # noqa: SLF001
    if cold_dt is None:
        return hot
    if version is None:
        with hot_lake._lock:  # noqa: SLF001
            hot_dt = hot_lake._current(table)  # noqa: SLF001
        if hot_dt is None:
            return _union(table, files, hot, cold_dt, None)
        return _union(table, files, hot, cold_dt, hot_dt)
    return _frozen_union(
        hot_lake.uri(table),
        version,
        hot_lake.options_key,
        files,
        cold_lake.uri(table),
        cold_dt.version(),
        cold_lake.options_key,
        table,
    )


@lru_cache(maxsize=16)
def _frozen_union(
    hot_uri: str,
    version: int,
    hot_options: tuple[tuple[str, str], ...],
    files: FileFilter,
    cold_uri: str,
    cold_version: int,
    cold_options: tuple[tuple[str, str], ...],
    table: TableDef,
) -> pads.Dataset:
    """:func:`tier_union` of two fixed versions (immutable, so cached)."""
    import pyarrow.dataset as pads  # noqa: PLC0415 (see the module's imports)

    cold_dt = snapshot(cold_uri, cold_version, cold_options)
    try:
        hot_dt = snapshot(hot_uri, version, hot_options)
    except TableNotFoundError:
        return _union(table, files, pads.dataset(table.schema.empty_table()), cold_dt, None)
    return _union(table, files, _frozen_dataset(hot_uri, version, hot_options, files), cold_dt, hot_dt)


def _union(
    table: TableDef, files: FileFilter, hot: pads.Dataset, cold_dt: DeltaTable, hot_dt: DeltaTable | None
) -> pads.Dataset:
    """The union of :func:`tier_union`: ``hot``, and ``cold_dt``'s files chosen by ``files`` without
    the copies of the keys ``hot`` holds in the partitions both tiers have."""
    import pyarrow.dataset as pads  # noqa: PLC0415 (see the module's imports)

    column, key = table.partition_by[0], table.key
    both = _partitions(cold_dt, column, files) & (_partitions(hot_dt, column, files) if hot_dt else set())
    copied: dict[date, pa.Array] = {}
    for day in sorted(both):
        in_day = pads.field(column) == pa.scalar(day, table.schema.field(column).type)
        hot_keys = hot.to_table(columns=[key], filter=in_day)[key]
        if len(hot_keys) == 0:  # none of the day's hot files is chosen (``files`` on statistics)
            continue
        cold_day = arrow_dataset(cold_dt, ((column, "=", str(day)),))
        keys = cold_day.to_table(columns=[key], filter=in_day & pads.field(key).isin(hot_keys))[key]
        if len(keys):
            copied[day] = keys
    if not copied:
        cold = arrow_dataset(cold_dt, files)
        return pads.dataset([hot, cold])
    # A move in flight: those partitions' cold rows without the keys hot still holds, in memory.
    others = [*files, (column, "not in", [str(day) for day in copied])]
    parts = [hot, arrow_dataset(cold_dt, tuple(others))]
    for day, keys in copied.items():
        rows = arrow_dataset(cold_dt, ((column, "=", str(day)),)).to_table(filter=~pads.field(key).isin(keys))
        parts.append(pads.dataset(rows))
    return pads.dataset(parts)


def _partitions(dt: DeltaTable, column: str, files: FileFilter) -> set[date]:
    """The values of partition ``column`` of ``dt``'s files that ``files``' conditions on it keep."""
    values = pa.table(dt.get_add_actions(flatten=True))[f"partition.{column}"]
    kept = set(pc.unique(values).to_pylist()) - {None}
    for name, op, operand in files:
        if name == column:
            kept = {value for value in kept if _holds(value, op, operand)}
    return kept


def _holds(value: date, op: str, operand: Any) -> bool:  # noqa: ANN401 (a file filter's operand: any value)
    """Whether ``value op operand`` holds (a delta-rs file filter's operators)."""

    def same(other: Any) -> Any:  # noqa: ANN401 (filters give days as dates or as ISO text)
        return date.fromisoformat(other) if isinstance(other, str) else other

    if op in ("in", "not in"):
        inside = value in {same(item) for item in operand}
        return inside if op == "in" else not inside
    other = same(operand)
    return {
        "=": value == other,
        "!=": value != other,
        "<": value < other,
        "<=": value <= other,
        ">": value > other,
        ">=": value >= other,
    }[op]
