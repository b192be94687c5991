"""Duplicate conflicts and property type conflicts, computed per micro-batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl

from pipelines.consistency import duplicate_conflicts, type_conflicts
from pipelines.decoding import CONTENT_COLUMNS, canonical_numbers, content_hash, json_type, property_types

T0 = datetime(2024, 5, 1, tzinfo=UTC)
CONTENT = ["event_type", "client_timestamp", "user_id", "anonymous_id", "session_id", "page_url", "referrer"]


def batch(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in CONTENT} | {"location": None, "context": None, "properties": "{}", "app": "a"}
    frame = pl.DataFrame(
        [base | {"received_at": T0 + timedelta(seconds=i), "bronze_version": 1} | r for i, r in enumerate(rows)],
        schema_overrides={c: pl.String for c in [*CONTENT, "location", "context"]},
    )
    hashes = [content_hash(row) for row in frame.select(CONTENT_COLUMNS).rows()]
    return frame.with_columns(pl.Series("content_hash", hashes, dtype=pl.String))


def test_json_types_follow_rfc_8259_kinds() -> None:
    assert [json_type(v) for v in (1, 1.5, True, "x", [], {}, None)] == [
        "number",
        "number",
        "boolean",
        "string",
        "array",
        "object",
        None,
    ]


def test_content_hash_is_stable_and_ignores_nothing_but_receipt_metadata() -> None:
    frame = batch([{"event_id": "e", "properties": '{"a":1}'}, {"event_id": "e", "properties": '{"a":1}'}])
    assert frame["content_hash"][0] == frame["content_hash"][1]
    # Stored in silver and compared across releases: BLAKE2b-128 over the content columns joined
    # by U+001F, NULL as U+0000 (nine NULL columns, then the properties).
    assert frame["content_hash"][0] == "673cc7096d7e29b78c766aef3b6f0214"
    other = batch([{"event_id": "e", "properties": '{"a":2}'}])
    assert other["content_hash"][0] != frame["content_hash"][0]
    null_vs_empty = batch([{"event_id": "e", "user_id": ""}, {"event_id": "e", "user_id": None}])
    assert null_vs_empty["content_hash"][0] != null_vs_empty["content_hash"][1]


def test_copies_that_differ_from_the_winner_conflict_and_the_kept_silver_copy_wins() -> None:
    frame = batch(
        [
            {"event_id": "a", "properties": '{"p":1}'},  # first of a: wins
            {"event_id": "a", "properties": '{"p":1}'},  # plain duplicate
            {"event_id": "a", "properties": '{"p":2}'},  # conflict
            {"event_id": "b", "properties": '{"p":1}'},  # b is in silver with other content
            {"event_id": "c", "properties": '{"p":1}'},  # c in silver with a NULL hash (older release)
        ]
    )
    kept_b = batch([{"event_id": "b", "properties": '{"p":0}'}])["content_hash"][0]
    prior = pl.DataFrame({"event_id": ["b", "c"], "content_hash": [kept_b, None]})
    assert duplicate_conflicts(frame, prior).to_list() == [False, False, True, True, False]


def test_property_types_encode_top_level_json_types_and_skip_nulls() -> None:
    assert property_types({"a": 1, "b": "x", "c": None, "d": [1], "e\x1ef": {}, "e\x1ff": 1, "%": True}) == (
        "a\x1fnumber\x1eb\x1fstring\x1ed\x1farray\x1ee%1Ef\x1fobject\x1ee%1Ff\x1fnumber\x1e%25\x1fboolean"
    )


def test_separator_characters_in_keys_are_distinct_keys_not_a_type_conflict() -> None:
    # Regression: both separators became U+FFFD, so "a\x1fb" and "a\x1eb" collapsed into one key.
    encoded = property_types({"a\x1fb": 1, "a\x1eb": "x"})
    frame = pl.DataFrame(
        {"app": ["a"], "event_type": ["click"], "received_at": [T0], "bronze_version": [1], "property_types": [encoded]}
    )
    flags, new = type_conflicts(
        frame, pl.DataFrame(schema=dict.fromkeys(["app", "event_type", "property", "json_type"], pl.String))
    )
    assert flags.to_list() == [None]
    assert sorted(new["property"].to_list()) == ["a%1Eb", "a%1Fb"]


def test_numbers_have_one_spelling_and_strings_are_never_touched() -> None:
    # Regression: {"price": 10} then {"price": 10.0} under one id was a duplicate_conflict; and a
    # text rewrite of the JSON also changed strings ("price 1.0 EUR" == "price 1 EUR"), silently
    # dropping a changed event as a duplicate.
    def canon(value: object) -> str:
        return canonical_numbers(value, orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())

    assert canon({"price": 10.0}) == canon({"price": 10}) == '{"price":10}'
    assert canon({"n": 1e15}) == canon({"n": 1000000000000000})  # integral floats up to 2**53
    assert canon({"z": -0.0}) == canon({"z": 0})
    assert canon({"p": 10.5}) == '{"p":10.5}'
    assert canon({"label": "price 1.0 EUR"}) != canon({"label": "price 1 EUR"})
    assert canon({"label": "[2.00]"}) == '{"label":"[2.00]"}'
    assert canon({"a": [1.0, {"b": 2.0}], "s": "1.0"}) == '{"a":[1,{"b":2}],"s":"1.0"}'


def test_content_hash_is_stable_across_releases() -> None:
    # Silver keeps these hashes: a later release must compute the same digest for the same content
    # (value from the release that introduced content_hash, BLAKE2b-128 of the joined columns).
    row = {
        "event_type": "click",
        "client_timestamp": "2024-05-01T10:00:00Z",
        "user_id": "u1",
        "anonymous_id": None,
        "session_id": "s1",
        "page_url": "https://shop.example/p?a=1",
        "referrer": None,
        "location": None,
        "context": '{"app":"x"}',
        "properties": '{"price":10,"sku":"A-1"}',
    }
    assert content_hash(row[c] for c in CONTENT_COLUMNS) == "8c0f100bfb910d98804e3a6804720248"
