"""Silver's per-row stages in worker processes give exactly what one process gives."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import polars as pl
import pyarrow as pa
import pytest

from pipelines import transform
from pipelines.decoding import decode_fields
from pipelines.parallel import Parallelism, RowPool
from pipelines.pseudonyms import Pseudonymizer
from pipelines.scrubbing import Scrubber
from tests.integration.test_canary import payloads
from warehouse.contract import RequestContext, explode_payload
from warehouse.tables import RAW_EVENTS

POOLED = Parallelism(workers=2, min_rows=1)
COLUMNS = ("payload", "event_type", "source_format")


def bronze(copies: int = 3) -> pa.Table:
    """The canary corpus (secrets in URLs, nested properties, stack traces…) as bronze rows."""
    ctx = RequestContext(received_at=datetime(2024, 5, 1, tzinfo=UTC), ip="203.0.113.9")
    rows = []
    for copy in range(copies):
        for i, payload in enumerate(payloads()):
            rows.extend(explode_payload({**payload, "uuid": f"e{copy}-{i}"}, ctx))
    table = pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema)
    return table.append_column("_commit_version", pa.array([1] * table.num_rows, pa.int64()))


def test_pooled_decode_and_scrub_equal_one_process_row_for_row() -> None:
    changes = bronze()
    alone = transform.decode(changes)
    with RowPool(POOLED, changes.num_rows) as pool:
        assert pool.processes == 2
        pooled = transform.decode(changes, pool)
        scrubber = Scrubber()
        silver = transform.build_silver(pooled, "r", scrubber, Pseudonymizer(b"k", scrubber), pool)
    assert pooled.equals(alone)
    reference = Scrubber()
    assert silver.equals(transform.build_silver(alone, "r", reference, Pseudonymizer(b"k", reference)))
    assert scrubber.counts == reference.counts
    assert scrubber.counts["sensitive_key"] > 0 and scrubber.counts["email"] > 0


def test_small_batches_and_one_worker_stay_in_process() -> None:
    assert Parallelism(workers=2, min_rows=50_000).processes(49_999) == 1
    assert Parallelism(workers=2, min_rows=50_000).processes(50_000) == 2
    assert Parallelism(workers=1, min_rows=1).processes(10**6) == 1
    assert Parallelism(workers=0, min_rows=1).processes(10**6) >= 1  # one per core
    with RowPool(Parallelism(workers=2, min_rows=100), 99) as pool:
        empty = pl.DataFrame(schema=dict.fromkeys(COLUMNS, pl.String))
        assert pool.processes == 1 and len(pool.map(decode_fields, empty)) == 1


def test_an_error_in_a_worker_reaches_the_caller() -> None:
    changes = bronze(1)
    payload = changes["payload"].to_pylist()
    payload[-1] = "{not json"  # the last slice is a worker's
    corrupted = changes.set_column(changes.schema.get_field_index("payload"), "payload", pa.array(payload))
    with RowPool(POOLED, corrupted.num_rows) as pool, pytest.raises(orjson.JSONDecodeError):
        transform.decode(corrupted, pool)
