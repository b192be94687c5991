"""Bronze micro-batch → validation frame → split → silver/quarantine rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pyarrow as pa

from pipelines import transform
from pipelines.scrubbing import Scrubber
from pipelines.validation import FAILED_CHECKS, failed_checks, load_suite, split_rows, suite_path
from warehouse.contract.native import explode_payload
from warehouse.contract.rows import RequestContext
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
NO_PRIOR = pl.DataFrame(schema={"event_id": pl.String, "content_hash": pl.String})
NO_TYPES = pl.DataFrame(
    schema={"app": pl.String, "event_type": pl.String, "property": pl.String, "json_type": pl.String}
)


def bronze(payloads: list[tuple[dict, datetime, int]]) -> pa.Table:
    rows = []
    for payload, received_at, version in payloads:
        for row in explode_payload(payload, RequestContext(received_at=received_at, user_agent="Mozilla/5.0")):
            rows.append({**row, "_commit_version": version})
    schema = RAW_EVENTS.schema.append(pa.field("_commit_version", pa.int64()))
    return pa.Table.from_pylist(rows, schema=schema)


def test_split_dedups_each_side_keeps_first_received_and_maps_reasons() -> None:
    good = {"uuid": "a", "timestamp": "2024-05-01T10:00:00Z", "user": "u1", "events": {"click": {"x": 1}}}
    late_copy = {**good, "events": {"click": {"x": 2}}}  # same event_id, received later
    bad = {"uuid": "b", "timestamp": "1990-01-01T00:00:00Z", "user": "u2", "events": {"Bad Name": 1}}
    retry = {**good, "sentAt": "2024-05-01T10:00:30Z"}  # same content, another sentAt: a plain duplicate
    decoded = transform.decode(
        bronze([(late_copy, T0 + timedelta(minutes=5), 2), (good, T0, 1), (bad, T0, 1), (retry, T0, 3)])
    )
    decoded, _ = transform.with_consistency(decoded, NO_PRIOR, NO_TYPES)

    suite = load_suite(suite_path("raw_events"))
    split = split_rows(failed_checks(transform.validation_frame(decoded), suite)[FAILED_CHECKS], suite)
    valid, invalid, reasons = transform.apply_split(decoded, split)

    assert valid.height == 1 and orjson.loads(valid["properties"][0]) == {"x": 1}  # first received wins
    assert valid["bronze_version"].to_list() == [1]
    # the later copy with other content is not dropped silently: duplicate_conflict
    assert sorted(invalid["event_type"].to_list()) == ["Bad Name", "click"]
    by_type = dict(zip(invalid["event_type"].to_list(), reasons, strict=True))
    assert sorted(r["check"] for r in by_type["Bad Name"]) == ["event_type_name", "timestamp_after_2000"]
    assert [(r["check"], r["reason"]) for r in by_type["click"]] == [("event_id_content_matches", "duplicate_conflict")]

    silver = transform.build_silver(valid, "run-1")
    assert silver.schema == EVENTS.schema
    assert silver["event_date"].to_pylist() == [T0.date()]
    quarantine = transform.build_quarantine(invalid, reasons, "raw_events", "run-1", T0, Scrubber())
    assert quarantine.schema == REJECTED_EVENTS.schema
    assert quarantine["reason"].to_pylist() == [r[0]["check"] for r in reasons]
