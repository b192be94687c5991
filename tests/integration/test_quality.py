"""Schema drift, duplicate conflicts, quarantine replay, reprocessing and pseudonyms, end to end.

Events go through the real API into a real lake; every run is a real Dagster materialization.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import polars as pl
import pytest

from pipelines import registry
from pipelines.pseudonyms import Pseudonymizer
from pipelines.scrub_rules import DEFAULT_RULES_PATH
from pipelines.scrubbing import Scrubber
from tests.conftest import ApiServer, Env, expectation_results, materialize_all
from warehouse.lake.tables import EVENTS, PROPERTY_TYPES, QUARANTINE_REPLAYS, REJECTED_EVENTS


def event(uuid: str, user: str, events: dict[str, object], ts: str = "2024-05-01T10:00:00Z", **extra: object) -> dict:
    return {"uuid": uuid, "timestamp": ts, "app": "q", "user": user, "events": events, **extra}


BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"}


def send(api: ApiServer, batch: list[dict], headers: dict[str, str] | None = None) -> None:
    assert api.post("/v1/events", json=batch, headers=headers or BROWSER).status_code == 202


def silver(env: Env) -> pl.DataFrame:
    return pl.read_delta(env.lake.uri(EVENTS))


def quarantine(env: Env) -> pl.DataFrame:
    return pl.read_delta(env.lake.uri(REJECTED_EVENTS))


def checks(result: object) -> dict[str, tuple[bool, str]]:
    return {c.check_name: (c.passed, c.severity.value) for c in result.get_asset_check_evaluations()}  # type: ignore[attr-defined]


def test_type_change_between_batches_is_quarantined_as_type_conflict_and_new_fields_are_kept(
    api: ApiServer, env: Env
) -> None:
    send(api, [event("s1", "u1", {"scroll": 350})])
    materialize_all(env)
    # Batch 2: the same property now a string, and a field never seen before.
    batch = [event("s2", "u2", {"scroll": "350px"}), event("c1", "u2", {"click": {"component": "buy", "new": 1}})]
    send(api, batch)
    result = materialize_all(env)

    rows = quarantine(env)
    assert rows.select("event_id", "reason", "reason_type").rows() == [
        (rows["event_id"][0], "property_types_match", "type_conflict")
    ]
    failed = orjson.loads(rows["failed_expectations"][0])
    assert (failed[0]["check"], failed[0]["detail"]) == ("property_types_match", "value: number, got string")
    assert orjson.loads(rows["payload"][0])["events"] == {"scroll": "350px"}  # raw value intact, not cast
    kept = silver(env).sort("event_type")
    assert kept["event_type"].to_list() == ["click", "scroll"]
    assert orjson.loads(kept["properties"][0]) == {"component": "buy", "new": 1}  # new field kept
    assert orjson.loads(kept["properties"][1]) == {"value": 350}  # the first batch's row untouched
    registry = pl.read_delta(env.lake.uri(PROPERTY_TYPES)).sort("event_type", "property")
    assert registry.select("event_type", "property", "json_type").rows() == [
        ("click", "component", "string"),
        ("click", "new", "number"),
        ("scroll", "value", "number"),
    ]
    assert checks(result)["raw_events_expectations"] == (False, "WARN")
    failed = {name for name, ok in expectation_results(result, "events", "raw_events_expectations").items() if not ok}
    assert failed == {"property_types_match", "scroll_depth_numeric"}  # "350px" breaks both; the row names the first


def test_same_event_id_with_other_content_is_a_duplicate_conflict_and_the_first_copy_wins(
    api: ApiServer, env: Env
) -> None:
    first = event("d1", "u1", {"click": {"price": 10}}, sentAt="2024-05-01T10:00:05Z")
    send(api, [first])
    materialize_all(env)
    retry = {**first, "sentAt": "2024-05-01T10:09:00Z"}  # a retry: only sentAt differs
    changed = {**first, "events": {"click": {"price": 99}}}  # same id, other content
    for body in ([retry], [changed]):
        send(api, body)
    result = materialize_all(env)

    kept = silver(env)
    assert kept.height == 1 and orjson.loads(kept["properties"][0]) == {"price": 10}
    rows = quarantine(env)
    assert rows.select("reason", "reason_type").rows() == [("event_id_content_matches", "duplicate_conflict")]
    assert orjson.loads(rows["payload"][0])["events"] == {"click": {"price": 99}}
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert metadata["bronze_rows"].value == 2 and metadata["duplicates_dropped"].value == 1


def test_replay_leaves_rows_that_still_fail_in_quarantine(api: ApiServer, env: Env) -> None:
    batch = [event("r1", "u1", {"scroll": 30}), event("r2", "u2", {"scroll": "30%"}, ts="2024-05-02T10:00:00Z")]
    send(api, batch[:1])
    materialize_all(env)
    send(api, batch[1:])
    materialize_all(env)
    assert quarantine(env)["reason_type"].to_list() == ["type_conflict"]

    # Nothing changed yet: a replay moves nothing.
    result = materialize_all(env, mode="replay")
    assert result.asset_materializations_for_node("silver_events")[0].metadata["replayed_rows"].value == 0

    # Accepting strings for scroll.value lifts the type conflict, but "30%" still breaks the
    # scroll-depth rule (a depth is a number): the row stays quarantined, nothing moves.
    assert registry.accept(env.lake, "q", "scroll", "value", "string")
    result = materialize_all(env, mode="replay")
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert (metadata["replayed_rows"].value, metadata["inserted_rows"].value) == (0, 0)
    # A replay re-reads rows already rated on arrival: the batch checks do not rate it again.
    assert checks(result)["batch_has_people_events"] == (True, "WARN")
    assert checks(result)["quarantine_rate"] == (True, "WARN")
    assert quarantine(env).height == 1 and silver(env).height == 1


def test_replay_after_accepting_a_type_moves_the_row_once_and_reprocess_keeps_both(api: ApiServer, env: Env) -> None:
    batch = [event("t1", "u1", {"plan": {"tier": 1}}), event("t2", "u2", {"plan": {"tier": "pro"}})]
    send(api, batch[:1])
    materialize_all(env)
    send(api, batch[1:])
    materialize_all(env)
    assert quarantine(env)["reason_type"].to_list() == ["type_conflict"]

    out = subprocess.run(
        [str(Path(sys.executable).parent / "eventlake-types"), "accept", "q", "plan", "tier", "string"],
        env={**os.environ, "EVENTLAKE_LAKE_URI": env.lake_root},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "accepted: q/plan.tier as string" in out
    for _ in range(2):  # the second replay finds nothing left to move
        result = materialize_all(env, mode="replay")
    assert sorted(silver(env)["user_id"].to_list()) == ["u1", "u2"]
    assert pl.read_delta(env.lake.uri(QUARANTINE_REPLAYS)).height == 1
    assert result.asset_materializations_for_node("silver_events")[0].metadata["replayed_rows"].value == 0

    # Regression: replay re-registered the type, and a later reprocess pushed t1 out of silver.
    materialize_all(env, mode="reprocess", first_day="2024-05-01", last_day="2024-05-01")
    assert sorted(silver(env)["user_id"].to_list()) == ["u1", "u2"]

    con = duckdb.connect(str(env.warehouse), read_only=True)
    assert con.execute("select dau from daily_active_users where app = 'q'").fetchall() == [(2,)]
    outcomes = dict(
        con.execute("select outcome, sum(events) from data_quality_daily where app = 'q' group by all").fetchall()
    )
    con.close()
    assert outcomes == {"valid": 2}  # the replayed row counts once, as valid


def test_reprocess_moves_rows_that_now_pass_out_of_quarantine_and_counts_them_once(api: ApiServer, env: Env) -> None:
    # Regression: reprocess put a formerly quarantined row in silver without recording it, so
    # data_quality_daily counted it as both valid and quarantined.
    send(api, [event("v1", "u1", {"plan": {"tier": 1}})])
    materialize_all(env)
    send(api, [event("v2", "u2", {"plan": {"tier": "pro"}})])
    materialize_all(env)
    registry.accept(env.lake, "q", "plan", "tier", "string")
    result = materialize_all(env, mode="reprocess", first_day="2024-05-01", last_day="2024-05-01")
    assert result.asset_materializations_for_node("silver_events")[0].metadata["replayed_rows"].value == 1
    assert silver(env).height == 2
    con = duckdb.connect(str(env.warehouse), read_only=True)
    outcomes = dict(con.execute("select outcome, sum(events) from data_quality_daily group by all").fetchall())
    con.close()
    assert outcomes == {"valid": 2}


def test_a_quarantined_row_never_decides_a_property_type(api: ApiServer, env: Env) -> None:
    # Regression: a row quarantined for its timestamp registered price as a string, and every
    # valid event with a numeric price was quarantined after it.
    send(api, [event("bad", "u1", {"click": {"price": "10"}}, ts="1999-01-01T00:00:00Z")])
    materialize_all(env)
    send(api, [event("good", "u2", {"click": {"price": 10}})])
    materialize_all(env)
    assert silver(env)["user_id"].to_list() == ["u2"]
    assert quarantine(env)["reason"].to_list() == ["timestamp_after_2000"]
    registered = pl.read_delta(env.lake.uri(PROPERTY_TYPES)).select("property", "json_type").rows()
    assert registered == [("price", "number")]


def test_segment_retries_without_a_timestamp_or_with_reordered_context_are_duplicates(api: ApiServer, env: Env) -> None:
    # Regression: the receive time that stands in for a missing timestamp, and context key order,
    # made every such retry a duplicate_conflict.
    message = {"type": "track", "messageId": "m-1", "anonymousId": "a1", "event": "Clicked", "properties": {"x": 1}}
    ordered = {**message, "messageId": "m-2", "context": {"locale": "en", "library": {"name": "x", "version": "1"}}}
    reordered = {**ordered, "context": {"library": {"version": "1", "name": "x"}, "locale": "en"}}
    for body in ([message, ordered], [message, reordered]):
        assert api.post("/v1/batch", json={"batch": body}, headers=BROWSER).status_code == 200
        materialize_all(env)
    assert silver(env).height == 2  # one row per messageId
    assert quarantine(env).height == 0


def test_batch_checks_rate_the_batch_with_severity(api: ApiServer, env: Env) -> None:
    bots = {"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
    send(api, [event("b1", "u1", {"click": {}})], bots)
    assert checks(materialize_all(env))["batch_has_people_events"] == (False, "WARN")

    bad = [event(f"x{i}", "u1", {"click": {}}, ts="1999-01-01T00:00:00Z") for i in range(3)]
    send(api, bad)
    result = checks(materialize_all(env))
    assert result["batch_has_people_events"] == (False, "ERROR")
    assert result["quarantine_rate"] == (False, "ERROR")

    assert checks(materialize_all(env))["batch_has_people_events"] == (True, "WARN")  # empty range: marked, passes


def test_reprocess_rebuilds_a_day_range_idempotently_and_a_secret_caught_late_leaves_silver_and_gold(
    api: ApiServer, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [
        event("p1", "u1", {"click": {"note": "order ACME-7F3K9 shipped"}}, ts="2024-05-01T10:00:00Z"),
        event("p2", "u2", {"click": {"note": "ok"}}, ts="2024-05-02T10:00:00Z"),
        event("p3", "u3", {"click": {"note": "ACME-1A2B3 again"}}, ts="2024-05-03T10:00:00Z"),
    ]
    send(api, batch)
    materialize_all(env)
    before = silver(env).drop("run_id").sort("event_id")
    assert "ACME-7F3K9" in before.write_csv()

    # Reprocessing with the same rules changes nothing (idempotent), twice.
    for _ in range(2):
        materialize_all(env, mode="reprocess", first_day="2024-05-01", last_day="2024-05-03")
        assert silver(env).drop("run_id").sort("event_id").equals(before)

    # A rule added late: order codes are secret. Reprocess May 1-2 only.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        DEFAULT_RULES_PATH.read_text().replace(
            "value_patterns:\n",
            'value_patterns:\n  - name: order_code\n    pattern: "ACME-[0-9A-Z]{5}"\n    mask: "[ORDER]"\n',
            1,
        )
    )
    monkeypatch.setenv("EVENTLAKE_SCRUB_RULES_PATH", str(rules))
    result = materialize_all(env, mode="reprocess", first_day="2024-05-01", last_day="2024-05-02")
    after = silver(env).sort("event_id")
    assert [orjson.loads(p)["note"] for p in after["properties"]] == [
        "order [ORDER] shipped",
        "ok",
        "ACME-1A2B3 again",  # May 3 was outside the range
    ]
    assert after["event_date"].to_list() == [date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3)]
    metadata = result.asset_materializations_for_node("silver_events")[0].metadata
    assert metadata["scrub_report"].value == {"order_code": 1}
    con = duckdb.connect(str(env.warehouse), read_only=True)
    assert con.execute("select day, dau from daily_active_users where app = 'q' order by day").fetchall() == [
        (date(2024, 5, 1), 1),
        (date(2024, 5, 2), 1),
        (date(2024, 5, 3), 1),
    ]
    con.close()


def test_email_user_ids_become_consistent_pseudonyms_and_people_counts_stay_right(api: ApiServer, env: Env) -> None:
    batch = [
        event("m1", "Jane.Doe@example.com", {"click": {}}),
        event("m2", "Jane.Doe@example.com", {"click": {}}, ts="2024-05-01T11:00:00Z"),
        event("m3", "u-42", {"click": {}}),
    ]
    send(api, batch)
    result = materialize_all(env)
    users = silver(env).sort("event_id")["user_id"].to_list()
    expected = Pseudonymizer(env.settings().pseudonym_key.get_secret_value().encode(), Scrubber()).pseudonym(  # type: ignore[union-attr]
        "Jane.Doe@example.com"
    )
    assert users == [expected, expected, "u-42"]
    assert expected.startswith("hmac:") and len(expected) == 37
    assert result.asset_materializations_for_node("silver_events")[0].metadata["pseudonymized_ids"].value == 1
    invariants = [
        c for c in result.get_asset_check_evaluations() if c.severity == dg.AssetCheckSeverity.ERROR
    ]  # the silver and gold suites, the users source; not the marts of page views, errors, forms and
    # funnel steps, which clicks cannot change (skipped: nothing rewritten to validate)
    assert len(invariants) == 14 and all(c.passed for c in invariants)
    expectations = sum(
        len(expectation_results(result, c.asset_key.to_user_string(), c.check_name))
        for c in invariants
        if c.check_name == "invariants"
    )
    assert expectations == 104  # of the 148 in every suite
    con = duckdb.connect(str(env.warehouse), read_only=True)
    assert con.execute("select dau from daily_active_users where app = 'q'").fetchall() == [(2,)]
    con.close()


def test_a_retry_that_passes_later_turns_its_quarantined_copy_into_a_duplicate(api: ApiServer, env: Env) -> None:
    # Regression: received 3, counted valid 2 + quarantined 1 + nothing: the quarantined copy of
    # an event a later retry put in silver was still counted as an open failure.
    send(api, [event("k1", "u1", {"plan": {"tier": 1}})])
    materialize_all(env)
    retry = event("k2", "u2", {"plan": {"tier": "pro"}})
    send(api, [retry])
    materialize_all(env)
    registry.accept(env.lake, "q", "plan", "tier", "string")
    send(api, [retry])  # the client retries; now it passes
    materialize_all(env)
    con = duckdb.connect(str(env.warehouse), read_only=True)
    outcomes = dict(con.execute("select outcome, sum(events) from data_quality_daily group by all").fetchall())
    con.close()
    assert outcomes == {"valid": 2, "duplicate": 1}


def test_accepting_a_type_for_a_property_name_with_a_percent_sign(api: ApiServer, env: Env) -> None:
    # Regression: the registry stored "discount%25" and accept() the raw name, which never matched.
    send(api, [event("pc1", "u1", {"click": {"discount%": 5}})])
    materialize_all(env)
    send(api, [event("pc2", "u2", {"click": {"discount%": "5%"}})])
    materialize_all(env)
    assert quarantine(env)["reason_type"].to_list() == ["type_conflict"]
    assert registry.accept(env.lake, "q", "click", "discount%", "string")
    with pytest.raises(ValueError, match="empty"):
        registry.accept(env.lake, "q", "", "discount%", "string")
    result = materialize_all(env, mode="replay")
    assert result.asset_materializations_for_node("silver_events")[0].metadata["replayed_rows"].value == 1


def test_data_quality_daily_recomputes_only_changed_received_days_and_equals_a_rebuild(
    api: ApiServer, env: Env
) -> None:
    def refresh_counts(result: dg.ExecuteInProcessResult) -> tuple[int, dict[str, int]]:
        [changed] = [
            m.metadata["changed_days"].value
            for m in result.asset_materializations_for_node("gold_marts")
            if m.asset_key == dg.AssetKey("data_quality_daily")
        ]
        con = duckdb.connect(str(env.warehouse), read_only=True)
        outcomes = dict(con.execute("select outcome, sum(events) from data_quality_daily group by all").fetchall())
        con.close()
        return changed, outcomes  # type: ignore[return-value]

    send(api, [event("v1", "u1", {"plan": {"tier": 1}})])
    assert refresh_counts(materialize_all(env)) == (1, {"valid": 1})
    send(api, [event("v2", "u2", {"plan": {"tier": "pro"}}), event("v1", "u1", {"plan": {"tier": 1}})])
    assert refresh_counts(materialize_all(env)) == (1, {"valid": 1, "quarantined": 1, "duplicate": 1})
    assert refresh_counts(materialize_all(env)) == (0, {"valid": 1, "quarantined": 1, "duplicate": 1})

    # The quarantined copy reaches silver by replay: no new bronze row, its received day changes.
    registry.accept(env.lake, "q", "plan", "tier", "string")
    assert refresh_counts(materialize_all(env, mode="replay")) == (1, {"valid": 2, "duplicate": 1})

    # What the incremental runs kept equals a rebuild from the start of the three tables.
    from pipelines.data_quality import refresh_data_quality
    from warehouse import gold
    from warehouse.marts import catalog

    query = "select app, source, day, outcome, reason, reason_type, events from data_quality_daily order by all"
    con = gold.connect(env.warehouse)
    incremental = con.execute(query).fetchall()
    con.execute("delete from gold_watermarks where mart = 'data_quality_daily'")
    assert refresh_data_quality(con, env.lake, catalog()["data_quality_daily"]) == 1
    assert con.execute(query).fetchall() == incremental
    con.close()
