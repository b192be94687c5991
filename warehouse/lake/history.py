"""Reading a lake table's history: its change data feed, its commits and the partitions they touched.

Functions of a :class:`warehouse.lake.store.Lake` and a table; each reads the versions it is given
(immutable snapshots, cached per process by :func:`warehouse.lake.store.snapshot`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import TableNotFoundError

from warehouse.lake.object_store import filesystem
from warehouse.lake.store import Lake, snapshot
from warehouse.lake.tables import TableDef


def change_stream(
    lake: Lake,
    table: TableDef,
    after_version: int,
    until_version: int,
    change_types: tuple[str, ...] = ("insert",),
    predicate: str | None = None,
    columns: list[str] | None = None,
    lifecycle: bool = False,
) -> pa.RecordBatchReader:
    """Rows changed in versions ``(after_version, until_version]`` from the change data feed,
    streamed batch by batch (a first build's feed is the whole history: it never sits in memory).

    ``change_types``: which of ``insert``/``delete`` to keep (a predicate overwrite reports the
    rows it replaced as ``delete``). ``predicate``: a delta-rs SQL filter, e.g. on the partition
    column. ``columns``: read only these (default all). Adds ``_commit_version`` (int64) and,
    when more than one change type is asked for, ``_change_type``; the other CDF bookkeeping
    columns are dropped. Columns have the table schema's types. The reader can be consumed once
    (DuckDB scans a registered reader once: reference it once per query).

    A feed from the start (``after_version`` -1: a first build, a rebuild) is read from the table as
    of ``until_version`` instead, every row an ``insert`` of ``until_version``: the same rows a first
    build ends with (only the commit each row came from is lost), and it works however old the
    table is: replaying the feed from version 0 fails once log entries expired or a vacuum removed
    files that later commits replaced (:mod:`warehouse.lake.maintenance`), and reads every
    rewritten version of a row on the way. A tiered table's (:attr:`TableDef.tiered`) rows in the
    lake's cold tier are part of it, each row once (as :meth:`Lake.dataset` reads them).

    Lifecycle commits (:data:`LIFECYCLE_KEY`: partitions moved to the cold tier or expired) are
    left out of a feed: to a consumer, they are no change (``lifecycle``: keep them).

    Raises:
        FileNotFoundError: a commit file in the range is gone (its log was cleaned up).
    """
    schema = pa.schema([table.schema.field(name) for name in columns or table.schema.names])
    out = pa.schema(
        [
            *schema,
            pa.field("_commit_version", pa.int64()),
            *([pa.field("_change_type", pa.string())] if len(change_types) > 1 else []),
        ]
    )
    if until_version <= after_version:
        return pa.RecordBatchReader.from_batches(out, [])
    if after_version < 0 or lifecycle:
        ranges = [(after_version, until_version)]
    else:  # lifecycle commits are not read at all (a move's delete would read the whole partition)
        ranges = _ranges_without(
            after_version, until_version, lifecycle_versions(lake, table, after_version, until_version)
        )
    feeds = [_feed(lake, table, start, end, predicate, columns, schema) for start, end in ranges]
    wanted = pa.array(change_types)

    def batches() -> Iterator[pa.RecordBatch]:
        for feed in feeds:
            if feed is None:
                continue
            for batch in feed:
                # delta-rs returns string_view columns, which pyarrow's filter kernels lack: cast first.
                change_type = batch.column("_change_type").cast(pa.string())
                arrays = [batch.column(field.name).cast(field.type) for field in schema]
                arrays.append(batch.column("_commit_version").cast(pa.int64()))
                if len(change_types) > 1:
                    arrays.append(change_type)
                yield pa.RecordBatch.from_arrays(arrays, schema=out).filter(pc.is_in(change_type, wanted))

    return pa.RecordBatchReader.from_batches(out, batches())


def _ranges_without(after_version: int, until_version: int, skipped: list[int]) -> list[tuple[int, int]]:
    """``(after, until]`` ranges covering ``(after_version, until_version]`` without the ``skipped`` versions."""
    ranges, start = [], after_version
    for version in sorted(skipped):
        if version > start + 1:
            ranges.append((start, version - 1))
        start = version
    if until_version > start:
        ranges.append((start, until_version))
    return ranges


#: A feed of at most this many added rows (a micro-batch) is read once and kept in memory by
#: :class:`ChangeFeed`; a larger one (a first build: the whole history) is streamed on every read.
SHARED_FEED_MAX_ROWS = 250_000


class ChangeFeed:
    """The change data feed (inserts and deletes) of ``table`` over ``(after_version, until_version]``,
    shared by every reader of one run: read from storage once when the range added at most
    ``max_rows`` rows (the commits' ``numRecords``, :func:`commit_rows`), else streamed again on each
    :meth:`read`, as :func:`change_stream` does, so a first build's history never sits in memory.

    A micro-batch's gold refreshes read the same silver range many times (identity links,
    first-seen times, each mart's changed days, data quality); one storage read serves them all.
    """

    def __init__(
        self, lake: Lake, table: TableDef, after_version: int, until_version: int, max_rows: int = SHARED_FEED_MAX_ROWS
    ) -> None:
        self.lake = lake
        self.table = table
        self.after_version = after_version
        self.until_version = until_version
        self.max_rows = max_rows
        self._rows: pa.Table | None = None
        #: per key column: the last version of the range that deleted each key (read_surviving)
        self._deleted: dict[str, pa.Table] = {}

    def _cached(self) -> pa.Table | None:
        """The whole range in memory (every column, both change types), or None when it is too large
        (or its commit files are gone) and must be streamed."""
        if self._rows is not None:
            return self._rows
        if self.after_version < 0:
            return None
        added = 0
        try:
            for _, rows in commit_rows(self.lake, self.table, self.after_version, self.until_version):
                added += rows
                if added > self.max_rows:
                    return None
        except FileNotFoundError:
            return None
        self._rows = change_stream(
            self.lake, self.table, self.after_version, self.until_version, ("insert", "delete")
        ).read_all()
        return self._rows

    def inserted(self) -> pa.Table | None:
        """Every row the range inserted (all columns, plus ``_commit_version``) when the range is
        kept in memory (at most ``max_rows`` rows added), else None: a large range is only streamed."""
        rows = self._cached()
        if rows is None:
            return None
        return rows.filter(pc.equal(rows["_change_type"], "insert")).drop_columns(["_change_type"])

    def read(
        self,
        columns: list[str] | None = None,
        change_types: tuple[str, ...] = ("insert",),
        equals: tuple[str, str] | None = None,
    ) -> pa.RecordBatchReader:
        """The rows of the range, shaped as :func:`change_stream` gives them (``columns`` plus
        ``_commit_version``, and ``_change_type`` when more than one change type is asked for).

        ``equals``: ``(column, value)``, keep only the rows whose string column has that value
        (e.g. ``("event_type", "alias")``).

        Raises:
            ValueError: the value holds a quote.
        """
        if equals and "'" in equals[1]:
            raise ValueError(f"not a literal for a feed filter: {equals[1]!r}")
        rows = self._cached()
        if rows is None:
            predicate = f"{equals[0]} = '{equals[1]}'" if equals else None
            return change_stream(
                self.lake, self.table, self.after_version, self.until_version, change_types, predicate, columns
            )
        keep = pc.is_in(rows["_change_type"], pa.array(change_types))
        if equals:
            keep = pc.and_(keep, pc.equal(rows[equals[0]], equals[1]))
        names = [*(columns or self.table.schema.names), "_commit_version"]
        if len(change_types) > 1:
            names.append("_change_type")
        selected = rows.filter(keep).select(names)
        return pa.RecordBatchReader.from_batches(selected.schema, selected.to_batches())

    def read_surviving(
        self, columns: list[str], equals: tuple[str, str] | None = None, key: str = "event_id"
    ) -> pa.RecordBatchReader:
        """The rows the range inserted that no later commit of the range deleted, shaped as
        :meth:`read` gives inserts: what the range added that the table still holds at its end.

        A row inserted by a micro-batch and deleted at a later version of the same range (an
        erasure that ran before gold caught up) is left out; a row deleted and inserted by the same
        commit (a rescrub's or reprocess's replacement) is kept. Rows are matched on ``key``. A feed
        from the start (a first build) is the table as it is: nothing to leave out.
        """
        if self.after_version < 0:
            return self.read(columns, equals=equals)
        if key not in self._deleted:  # shared by the run's readers, like the feed itself
            deleted = self.read([key], ("delete",)).read_all()
            self._deleted[key] = deleted.group_by(key).aggregate([("_commit_version", "max")])
        last = self._deleted[key]
        if not last.num_rows:
            return self.read(columns, equals=equals)
        keys, versions = last[key], last["_commit_version_max"]
        wanted = columns if key in columns else [*columns, key]
        rows = self.read(wanted, equals=equals)
        out = pa.schema([rows.schema.field(name) for name in [*columns, "_commit_version"]])

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in rows:
                at = pc.index_in(batch.column(key), value_set=keys)
                deleted_at = pc.fill_null(pc.take(versions, at), -1)
                kept = batch.filter(pc.less_equal(deleted_at, batch.column("_commit_version")))
                yield pa.RecordBatch.from_arrays([kept.column(f.name) for f in out], schema=out)

        return pa.RecordBatchReader.from_batches(out, batches())


#: Silver's (or another table's) change feed from a start version to the run's version: a run's
#: shared feeds (:meth:`pipelines.gold.MicroBatch.feed`).
FeedSource = Callable[[int], ChangeFeed]


#: The commit-info key of a lifecycle commit (:mod:`warehouse.lake.tiers`): its value says what it did,
#: ``move`` (partitions moved to the cold tier) or ``expire`` (partitions past their retention).
#: Change-feed readers skip these commits: to anyone downstream, a move or an expiry is not a deletion.
LIFECYCLE_KEY = "eventlake.lifecycle"


@dataclass(frozen=True)
class CommitSummary:
    """What one commit did: the rows its data-changing ``add`` actions added (their ``numRecords``
    statistics; an add without statistics counts 0), its :data:`LIFECYCLE_KEY` value (None for
    any other commit), and the values (as text) of the first partition column of the files it added
    or removed with ``dataChange`` (Delta protocol, "Add File and Remove File", "Per-file Statistics")."""

    rows_added: int
    lifecycle: str | None
    partitions: frozenset[str]


def commit_summaries(
    lake: Lake, table: TableDef, after_version: int, until_version: int
) -> Iterator[tuple[int, CommitSummary]]:
    """``(version, summary)`` of each commit in ``(after_version, until_version]``, oldest first.

    Reads the commit files ``_delta_log/<version, 20 digits>.json`` one at a time, lazily: a
    caller that stops iterating stops reading, so the cost follows the commits it takes, not the
    backlog or the table's age; each commit is read once per process (it never changes). The
    version is the file's name (delta-rs 1.6's ``history()`` numbers entries by counting, which
    shifts them when commits land meanwhile).

    Raises:
        FileNotFoundError: a commit file in the range is gone (its log was cleaned up).
    """
    column = table.partition_by[0] if table.partition_by else None
    for version in range(after_version + 1, until_version + 1):
        yield version, _commit_summary(lake.uri(table), version, column, lake.options_key)


def commit_rows(lake: Lake, table: TableDef, after_version: int, until_version: int) -> Iterator[tuple[int, int]]:
    """``(version, rows added)`` of each commit in ``(after_version, until_version]``, oldest first
    (:func:`commit_summaries`).

    Raises:
        FileNotFoundError: a commit file in the range is gone (its log was cleaned up).
    """
    for version, summary in commit_summaries(lake, table, after_version, until_version):
        yield version, summary.rows_added


def lifecycle_versions(lake: Lake, table: TableDef, after_version: int, until_version: int) -> list[int]:
    """The lifecycle commits (:data:`LIFECYCLE_KEY`) in ``(after_version, until_version]``.

    Raises:
        FileNotFoundError: a commit file in the range is gone (its log was cleaned up).
    """
    summaries = commit_summaries(lake, table, after_version, until_version)
    return [version for version, summary in summaries if summary.lifecycle is not None]


@functools.lru_cache(maxsize=16_384)
def _commit_summary(uri: str, version: int, column: str | None, storage: tuple[tuple[str, str], ...]) -> CommitSummary:
    """:class:`CommitSummary` of the commit file of ``version`` of the table at ``uri`` (``storage``:
    the lake's storage options as sorted pairs, hashable for the cache)."""
    fs, base = filesystem(uri, dict(storage))
    with fs.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as stream:
        actions = [orjson.loads(line) for line in stream.read().splitlines() if line.strip()]
    info: dict[str, Any] = next((action["commitInfo"] for action in actions if "commitInfo" in action), {})
    changes = [
        action.get("add") or action["remove"]
        for action in actions
        if ("add" in action or "remove" in action) and (action.get("add") or action["remove"]).get("dataChange", True)
    ]
    adds = [action["add"] for action in actions if "add" in action and action["add"].get("dataChange", True)]
    return CommitSummary(
        rows_added=sum(int(orjson.loads(add["stats"]).get("numRecords", 0)) for add in adds if add.get("stats")),
        lifecycle=info.get(LIFECYCLE_KEY),
        partitions=frozenset(
            value
            for change in changes
            if column is not None and (value := (change.get("partitionValues") or {}).get(column)) is not None
        ),
    )


def changed_partitions(lake: Lake, table: TableDef, after_version: int, until_version: int) -> pa.Array:
    """Values of the first partition column of the files added or removed in ``(after_version, until_version]``
    by commits that change data, lifecycle commits (:data:`LIFECYCLE_KEY`) left out.

    For tables without a change data feed (the quarantine): from the range's commit files
    (:func:`commit_summaries`), or, when one of them is gone, the two snapshots' file lists
    compared. ``after_version`` -1 means from the start (every file of ``until_version``); an
    empty array when nothing changed or the table does not exist.
    """
    column = f"partition.{table.partition_by[0]}"
    empty = pa.array([], table.schema.field(table.partition_by[0]).type)
    if until_version < 0 or until_version <= after_version:
        return empty
    if after_version >= 0:
        try:
            values = {
                value
                for _, summary in commit_summaries(lake, table, after_version, until_version)
                if summary.lifecycle is None
                for value in summary.partitions
            }
            return pa.array(sorted(values), pa.string()).cast(empty.type)
        except FileNotFoundError:
            pass
    files = [
        pa.table(dt.get_add_actions(flatten=True)).select(["path", column])
        for version in (after_version, until_version)
        if version >= 0 and (dt := lake.open(table, version)) is not None
    ]
    if not files:
        return empty
    if len(files) == 1:
        changed = files[0]
    else:
        before, after = files
        added = after.filter(pc.invert(pc.is_in(after["path"], before["path"])))
        removed = before.filter(pc.invert(pc.is_in(before["path"], after["path"])))
        changed = pa.concat_tables([added, removed])
    return pc.unique(changed[column].cast(empty.type))


def partitions_with_stats(lake: Lake, table: TableDef, version: int, exclude: tuple[str, ...] = ()) -> pa.Array:
    """Values of the first partition column of the files (as of ``version``) whose log entry
    carries min/max statistics of a column not in ``exclude``; empty when the table does not exist."""
    column = f"partition.{table.partition_by[0]}"
    empty = pa.array([], table.schema.field(table.partition_by[0]).type)
    dt = lake.open(table, version)
    if dt is None:
        return empty
    actions = pa.table(dt.get_add_actions(flatten=True))
    stats = [
        name
        for name in actions.column_names
        if name.startswith(("min.", "max.")) and name.split(".", 1)[1] not in exclude
    ]
    if not stats or actions.num_rows == 0:
        return empty
    carries = functools.reduce(pc.or_, (pc.is_valid(actions[name]) for name in stats))
    return pc.unique(actions.filter(carries)[column].cast(empty.type))


def _feed(
    lake: Lake,
    table: TableDef,
    after_version: int,
    until_version: int,
    predicate: str | None,
    columns: list[str] | None,
    schema: pa.Schema,
) -> pa.RecordBatchReader | None:
    """The raw change data feed of ``(after_version, until_version]`` (from the start: the table as of
    ``until_version``, see :func:`change_stream`); None when there is no table."""
    try:
        dt = snapshot(lake.uri(table), until_version, lake.options_key)
    except TableNotFoundError:
        return None
    if after_version < 0:

        def select(has: set[str]) -> str:
            # A column a release added that a tier has not got yet (the rescrub adds it) reads null.
            names = ", ".join(f'"{name}"' if name in has else f'null as "{name}"' for name in schema.names)
            return f"select {names}, 'insert' as _change_type, cast({until_version} as bigint) as _commit_version"

        query = QueryBuilder().register("t", dt)
        sql = f"{select(set(schema.names))} from t where {predicate or 'true'}"
        cold = lake.cold.open(table) if table.tiered and lake.cold is not None else None
        if cold is not None:
            query.register("c", cold)
            cold_select = select({field.name for field in cold.schema().fields})
            sql += f" union all {cold_select} from c where ({predicate or 'true'}) and {_not_in_hot(table, dt, cold)}"
        return pa.RecordBatchReader.from_stream(query.execute(sql))
    else:
        return pa.RecordBatchReader.from_stream(
            dt.load_cdf(
                starting_version=after_version + 1,
                ending_version=until_version,
                predicate=predicate,
                columns=[*columns, "_change_type", "_commit_version"] if columns else None,
            )
        )


def _not_in_hot(table: TableDef, hot: DeltaTable, cold: DeltaTable) -> str:
    """A SQL condition on the cold table ``c`` that leaves out the rows whose key the hot table ``t``
    holds in a partition both tiers have (a move in flight: see :func:`warehouse.lake.store.tier_union`)."""
    column, key = table.partition_by[0], table.key
    both = sorted(
        set(pa.table(hot.get_add_actions(flatten=True))[f"partition.{column}"].to_pylist())
        & set(pa.table(cold.get_add_actions(flatten=True))[f"partition.{column}"].to_pylist()) - {None}
    )
    if not both:
        return "true"
    days = ", ".join(f"'{day}'" for day in both)
    return f'(c."{column}" not in ({days}) or c."{key}" not in (select "{key}" from t where "{column}" in ({days})))'
