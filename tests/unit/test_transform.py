"""Bronze micro-batch → validation frame → split → silver/quarantine rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from pipelines import transform
from pipelines.validation import load_suite, split_by_suite
from warehouse.contract import RequestContext, explode_payload
from warehouse.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


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
    decoded = transform.decode(bronze([(late_copy, T0 + timedelta(minutes=5), 2), (good, T0, 1), (bad, T0, 1)]))

    split = split_by_suite(transform.validation_frame(decoded), load_suite("raw_events"))
    valid, invalid, reasons = transform.apply_split(decoded, split)

    assert valid.height == 1 and orjson.loads(valid["properties"][0]) == {"x": 1}  # first received wins
    assert valid["bronze_version"].to_list() == [1]
    assert invalid["event_type"].to_list() == ["Bad Name"]
    assert sorted(r["check"] for r in reasons[0]) == ["event_type_name", "timestamp_after_2000"]

    silver = transform.build_silver(valid, "run-1")
    assert silver.schema == EVENTS.schema
    assert silver["event_date"].to_pylist() == [T0.date()]
    quarantine = transform.build_quarantine(invalid, reasons, "raw_events", "run-1", T0)
    assert quarantine.schema == REJECTED_EVENTS.schema
    assert quarantine["reason"].to_pylist() == [reasons[0][0]["check"]]
