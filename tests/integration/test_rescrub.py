"""Rescrub of an existing lake: rows written under older scrub rules (here: before the ip_address
rule, in tables that kept statistics of every column) are scrubbed in place, and nothing of what
they held is left in any file of the tables; gold stays right; a crash midway loses no row."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pytest
import yaml

from pipelines import rescrub, silver, transform
from pipelines.defs.lifecycle import rescrub_sensor
from pipelines.pseudonyms import Pseudonymizer
from pipelines.scrub_rules import DEFAULT_RULES_PATH, RULES_PROPERTY, load_rules, rules_fingerprint
from pipelines.scrubbing import Scrubber
from pipelines.validation import load_suite, suite_path
from tests.conftest import ApiServer, Env, materialize_all, stored_text
from tests.integration.test_tiers import served
from warehouse.lake.history import change_stream
from warehouse.lake.maintenance import table_properties
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, REJECTED_EVENTS, TableDef
from warehouse.lake.tiers import move_partition, tiered_lake

pytestmark = pytest.mark.integration

FULL_IPS = ("198.51.100.77", "203.0.113.201", "2001:db8:cafe:1234", "192.0.2.155", "198.51.100.199")


def events(day: str, offset: int) -> list[dict[str, object]]:
    """Events over two days carrying full IPs where the old rules left them, plus ordinary ones."""
    base = {"app": "shop", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
    return [
        {
            **base,
            "uuid": f"a{offset}",
            "user": "u1",
            "timestamp": f"{day}T10:00:00Z",
            "location": {"city": "Berlin", "ip": "198.51.100.77"},
            "events": {"page_view": {}},
        },
        {
            **base,
            "uuid": f"b{offset}",
            "user": "u2",
            "timestamp": f"{day}T11:00:00Z",
            "events": {"login": {"client_addr": "203.0.113.201", "peer": "2001:db8:cafe:1234::9"}},
        },
        {
            **base,
            "uuid": f"c{offset}",
            "user": "u3",
            "timestamp": f"{day}T12:00:00Z",
            "events": {"errors": {"message": "db down", "stackTrace": "ConnectionError: 192.0.2.155:5432\n at db()"}},
        },
        {**base, "uuid": f"d{offset}", "user": "u4", "timestamp": f"{day}T13:00:00Z", "events": {"click": {"x": 1}}},
    ]


#: A day whose rows hold nothing the rules change: rewritten only for the statistics its files carry.
ORDINARY = {"uuid": "o", "app": "shop", "user": "u5", "timestamp": "2024-05-04T09:00:00Z", "events": {"click": {}}}

QUARANTINED = {
    "uuid": "q",
    "app": "shop",
    "user": "uq",
    "timestamp": "2099-01-01T00:00:00Z",
    "ip": "198.51.100.199",
    "events": {"view": {"note": "from 198.51.100.199"}},
}


@pytest.fixture
def old_lake(
    api: ApiServer, env: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> Env:
    """A lake as an older release left it: rules without ip_address, statistics on every column."""
    document = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    document["value_patterns"] = [rule for rule in document["value_patterns"] if rule["name"] != "ip_address"]
    old_rules = tmp_path / "old_rules.yaml"
    old_rules.write_text(yaml.safe_dump(document))
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(old_rules))
    with monkeypatch.context() as old:
        old.setattr(
            TableDef,
            "properties",
            property(lambda self: {"delta.enableChangeDataFeed": "true"} if self.change_data_feed else {}),
        )
        for day, offset in (("2024-05-01", 0), ("2024-05-02", 10)):
            assert api.post("/v1/events", json=events(day, offset)).json()["rejected"] == []
            materialize_all(env)
        assert api.post("/v1/events", json=[QUARANTINED, ORDINARY]).json()["rejected"] == []
        materialize_all(env)
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(DEFAULT_RULES_PATH))
    return env


def leaks(env: Env) -> list[tuple[str, str]]:
    found = []
    for table in (EVENTS, REJECTED_EVENTS):
        for name, text in stored_text(Path(env.lake.uri(table))).items():
            found += [(address, f"{table.path}/{name}") for address in FULL_IPS if address in text]
    return found


def rescrub_all(env: Env) -> dg.ExecuteInProcessResult:
    return materialize_all(env, with_purge=True, mode="rescrub")


def gold(env: Env) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(env.serving), read_only=True)
    try:
        return con.execute(
            "select app, day, dau from daily_active_users union all "
            "select app, cast(day as date), count(*) from error_summary group by all order by all"
        ).fetchall()
    finally:
        con.close()


def sensor(env: Env) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=env.resources())
    result = rescrub_sensor(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason)
    return result


def test_rescrub_leaves_no_full_ip_in_any_file_and_gold_unchanged(old_lake: Env) -> None:
    env = old_lake
    before_ids = pl.read_delta(env.lake.uri(EVENTS))["event_id"].sort().to_list()
    before_gold = gold(env)
    assert {address for address, _ in leaks(env)} == set(FULL_IPS)  # data files and the log's statistics
    assert any(place.startswith("silver/events/_delta_log") for _, place in leaks(env))
    request = sensor(env)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("rescrub@")

    result = rescrub_all(env)

    assert leaks(env) == []
    silver = pl.read_delta(env.lake.uri(EVENTS))
    assert silver["event_id"].sort().to_list() == before_ids  # every row exactly once
    assert pl.read_delta(env.lake.uri(REJECTED_EVENTS))["ip"].to_list() == ["198.51.100.0"]
    locations = {orjson.loads(text)["ip"] for text in silver["location"].drop_nulls()}
    assert locations == {"198.51.100.0"}
    assert gold(env) == before_gold
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert metadata["events"]["replaced_days"].value == 3  # 2 days with addresses, 1 for its statistics
    assert metadata["purged_history"]["events_files_removed"].value > 0
    # Statistics only for the columns readers prune by, from now on and in the checkpoint.
    for table in (EVENTS, REJECTED_EVENTS):
        actions = env.lake.open(table).get_add_actions(flatten=True)  # type: ignore[union-attr]
        stats = {name.split(".", 1)[1] for name in actions.schema.names if name.startswith("min.")}
        assert stats <= set(table.stats_columns)
        assert (table_properties(env.lake, table) or {}).get(RULES_PROPERTY) == load_rules(
            DEFAULT_RULES_PATH
        ).fingerprint
    assert isinstance(sensor(env), dg.SkipReason)

    # Idempotent: a second run rewrites nothing.
    again = rescrub_all(env)
    events_meta = next(
        e.materialization.metadata
        for e in again.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "events"
    )
    assert events_meta["replaced_days"].value == 0 and events_meta["inserted_rows"].value == 0


def test_after_the_purge_new_events_flow_and_a_new_warehouse_rebuilds_the_same(old_lake: Env, api: ApiServer) -> None:
    env = old_lake
    rescrub_all(env)
    assert api.post("/v1/events", json=events("2024-05-03", 20)).json()["rejected"] == []
    materialize_all(env)
    expected = gold(env)
    assert ("shop", date(2024, 5, 3), 4) in expected
    env.warehouse.unlink()  # silver's change feed no longer starts at version 0: a rebuild reads the table
    materialize_all(env)
    assert gold(env) == expected
    assert leaks(env) == []


def test_a_crash_midway_loses_no_row_and_the_next_run_finishes(old_lake: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env = old_lake
    before = pl.read_delta(env.lake.uri(EVENTS))["event_id"].sort().to_list()
    real = Lake.replace_where
    calls = []

    def crash_after_first(self: Lake, *args: object, **kwargs: object) -> int:
        calls.append(args)  # the step's retries crash too: the run fails after one partition
        if len(calls) >= 2:
            raise RuntimeError("killed between two partitions")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Lake, "replace_where", crash_after_first)
    with pytest.raises(Exception, match="killed between two partitions"):
        rescrub_all(env)
    monkeypatch.setattr(Lake, "replace_where", real)
    assert pl.read_delta(env.lake.uri(EVENTS))["event_id"].sort().to_list() == before
    assert rescrub.pending_tables(env.lake, load_rules(DEFAULT_RULES_PATH).fingerprint) == [EVENTS, REJECTED_EVENTS]

    rescrub_all(env)
    assert pl.read_delta(env.lake.uri(EVENTS))["event_id"].sort().to_list() == before
    assert leaks(env) == []
    assert rescrub.pending_tables(env.lake, load_rules(DEFAULT_RULES_PATH).fingerprint) == []


def test_the_sensor_sees_a_rules_file_edited_in_place(
    env: Env, tmp_path: Path, setting: Callable[[str, str], None]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEFAULT_RULES_PATH.read_text())
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(rules))
    assert isinstance(sensor(env), dg.SkipReason)  # no table yet
    for table in (EVENTS, REJECTED_EVENTS):  # created under these rules, as the silver step does
        env.lake.ensure(table, {RULES_PROPERTY: rules_fingerprint(rules)})
    assert isinstance(sensor(env), dg.SkipReason)
    rules.write_text(rules.read_text().replace('  - "pwd"\n', '  - "pwd"\n  - "memo"\n'))
    request = sensor(env)  # the same process: the file is read again, not a cached copy
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"rescrub@{rules_fingerprint(rules)}@silver-v{env.lake.version(EVENTS)}"


def test_a_release_adding_derived_columns_fills_them_in_from_silver_hot_and_cold(tmp_path: Path) -> None:
    """Silver written before ``is_asset``, ``country_source`` and the IP's country (bronze for those
    days may be gone): the rescrub fills them in from silver's own rows, in both tiers, once."""
    old_columns = {k: v for k, v in EVENTS.columns.items() if k not in ("is_asset", "country_source")}
    old_events = dataclasses.replace(EVENTS, columns=old_columns)
    at = {day: datetime(2024, 1, day, 12, tzinfo=UTC) for day in (1, 2)}

    def row(event_id: str, day: int, **values: object) -> dict[str, object]:
        return {
            "event_id": event_id,
            "event_type": "page_view",
            "app": "shop",
            "source": "web",
            "source_format": "native",
            "timestamp": at[day],
            "event_date": at[day].date(),
            "received_at": at[day],
            "user_id": "u1",
            "is_bot": False,
            "bronze_version": 1,
            "run_id": "r",
            **values,
        }

    rows = [
        row("css", 1, page_url="https://shop.example/app.css", ip="10.0.0.0"),
        row("nl", 1, page_url="https://shop.example/cart", ip="193.0.14.0"),  # RIPE NCC: NL
        row("fr", 2, page_url="https://shop.example/", ip="193.0.14.0", location="Lyon, France", country="FR"),
        row("click", 2, event_type="click", page_url="https://shop.example/logo.png", ip="8.8.8.0"),  # Google: US
    ]
    store = tiered_lake(str(tmp_path / "hot"), str(tmp_path / "cold"), 9, 64)
    store.ensure(old_events, {RULES_PROPERTY: "an-older-release"})
    store.append(old_events, pa.Table.from_pylist(rows, schema=old_events.schema))
    move_partition(store, old_events, "2024-01-01")  # day 1 in the cold tier, day 2 in hot
    assert store.cold is not None
    # The new release's first write adds the columns to hot; a first gold build reads both tiers meanwhile.
    store.ensure(EVENTS)
    version = store.version(EVENTS)
    assert version is not None
    before = change_stream(store, EVENTS, -1, version, columns=["event_id", "is_asset"]).read_all()
    assert sorted(before["event_id"].to_pylist()) == ["click", "css", "fr", "nl"] and before["is_asset"].null_count == 4
    rules = silver.Rules(
        load_suite(suite_path("raw_events")),
        Scrubber(),
        Pseudonymizer(b"k" * 32, Scrubber()),
        load_suite(suite_path("events")),
    )

    stats = rescrub.rescrub(store, rules)

    def derived(tier: Lake) -> dict[str, tuple[object, ...]]:
        table = tier.dataset(EVENTS, cold=False).to_table(columns=["event_id", *transform.BACKFILLED_COLUMNS])
        return {r["event_id"]: (r["is_asset"], r["country"], r["country_source"]) for r in table.to_pylist()}

    assert derived(store.cold) == {"css": (True, None, None), "nl": (False, "NL", "ip")}
    assert derived(store) == {"fr": (False, "FR", "location"), "click": (False, "US", "ip")}
    assert stats.replaced_days == 2
    assert rescrub.rescrub(store, rules).replaced_days == 0  # idempotent


def visit(uuid: str, user: str, at: str, path: str) -> dict[str, object]:
    """A page view of ``https://shop.example`` + ``path`` (a static file when its extension says so)."""
    return {"uuid": uuid, "app": "shop", "user": user, "timestamp": at, "page": f"https://shop.example{path}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "events": {"page_view": {}}}  # fmt: skip


UPGRADED = [
    visit("a1", "asset-first", "2024-05-01T10:00:00Z", "/logo.png"),  # cold: first_seen moves to 05-03
    visit("a2", "asset-first", "2024-05-03T10:00:00Z", "/"),
    visit("o1", "asset-only", "2024-05-02T11:00:00Z", "/favicon.ico"),  # cold: no person at all
    visit("n1", "normal", "2024-05-01T12:00:00Z", "/"),
    visit("n2", "normal", "2024-05-02T12:00:00Z", "/cart"),
    visit("n3", "normal", "2024-05-03T12:00:00Z", "/cart"),
    visit("h1", "hot-asset", "2024-05-02T23:59:00Z", "/app.css"),  # cold day, the person's page hot
    visit("h2", "hot-asset", "2024-05-03T09:00:00Z", "/"),
    visit("h3", "hot-first", "2024-05-03T08:00:00Z", "/app.js"),  # hot: first_seen moves an hour
    visit("h4", "hot-first", "2024-05-03T09:00:00Z", "/pricing"),
]


def serving_rows(env: Env, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(env.serving), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def warehouse_rows(env: Env, table: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        columns = [column for column in con.table(table).columns if column != "silver_version"]
        listed = ", ".join(f'"{column}"' for column in columns)
        return sorted(con.execute(f"select {listed} from {table}").fetchall(), key=repr)
    finally:
        con.close()


def build_upgraded(
    api: ApiServer,
    env: Env,
    tmp_path: Path,
    setting: Callable[[str, str], None],
    monkeypatch: pytest.MonkeyPatch,
    batches: list[list[dict[str, object]]],
    cold_days: tuple[str, ...],
) -> Env:
    """A lake an older release wrote from ``batches`` (one micro-batch each; no asset flag: static
    files counted as page views, people and first visits) and gold built from it, ``cold_days``
    moved to the cold tier since; then the release that flags assets (the rules' fingerprint
    differs: the rescrub is due)."""
    older = tmp_path / "older_rules.yaml"
    older.write_text(DEFAULT_RULES_PATH.read_text() + "\n# an older release's rules\n")
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(older))
    with monkeypatch.context() as old_release:
        old_release.setattr(
            transform, "asset_flags", lambda event_type, *_: pl.Series("is_asset", [None] * len(event_type), pl.Boolean)
        )
        for batch in batches:
            assert api.post("/v1/events", json=batch).json()["rejected"] == []
            materialize_all(env)
    for day in cold_days:
        move_partition(env.lake, EVENTS, day)
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(DEFAULT_RULES_PATH))
    return env


@pytest.fixture
def upgraded_lake(
    api: ApiServer, env: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> Env:
    """:func:`build_upgraded` of :data:`UPGRADED`, its first two days cold."""
    return build_upgraded(api, env, tmp_path, setting, monkeypatch, [UPGRADED], ("2024-05-01", "2024-05-02"))


PAGES = "select day, sum(views) from daily_page_views group by all order by all"
OUTCOMES = "select outcome, sum(events) from data_quality_daily group by all order by all"


def test_an_upgraded_lake_s_gold_after_the_rescrub_equals_a_fresh_build_cold_days_too(upgraded_lake: Env) -> None:
    """After the rescrub and the next micro-batch, every mart, data quality's counts and the
    first-seen times are what a warehouse built from scratch gives, though the cold days reach no
    change feed."""
    env = upgraded_lake
    assert serving_rows(env, PAGES) == [(date(2024, 5, 1), 2), (date(2024, 5, 2), 3), (date(2024, 5, 3), 5)]
    assert len(warehouse_rows(env, "person_first_seen")) == 5

    rescrub_all(env)
    materialize_all(env)  # the hot path's next micro-batch

    assert serving_rows(env, PAGES) == [(date(2024, 5, 1), 1), (date(2024, 5, 2), 1), (date(2024, 5, 3), 4)]
    first_seen = {person: str(at) for _, _, person, at in warehouse_rows(env, "person_first_seen")}
    assert len(first_seen) == 4  # asset-only is nobody
    assert {first_seen[person][:16] for person in first_seen if person.startswith(("asset-first", "hot-"))} == {
        "2024-05-03 10:00",
        "2024-05-03 09:00",
    }
    assert serving_rows(env, OUTCOMES) == [("asset", 4), ("valid", 6)]
    incremental = served(env)
    people = warehouse_rows(env, "person_first_seen")
    env.warehouse.unlink()
    env.serving.unlink()
    materialize_all(env)
    assert served(env) == incremental
    assert warehouse_rows(env, "person_first_seen") == people


@pytest.mark.parametrize("crash", ["before the commit", "after the commit"])
def test_a_crash_around_a_cold_partition_s_commit_counts_its_changes_once(
    upgraded_lake: Env, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    """The rescrub is killed once, just before or just after the commit of a cold partition's
    rewrite (its count changes recorded, not marked committed); the step's retry, a run from
    scratch, counts them exactly once."""
    env = upgraded_lake
    real_replace, real_committed = Lake.replace_where, rescrub.GoldChanges.committed
    killed: list[str] = []

    def replace_where(self: Lake, *args: object, **kwargs: object) -> int:
        if self.cold is None and crash == "before the commit" and not killed:  # the cold tier's Lake has none
            killed.append(crash)
            raise RuntimeError("killed before the commit")
        return real_replace(self, *args, **kwargs)  # type: ignore[arg-type]

    def committed(self: rescrub.GoldChanges, day: date, attempt: int) -> None:
        if crash == "after the commit" and not killed:
            killed.append(crash)
            raise RuntimeError("killed after the commit")
        real_committed(self, day, attempt)

    with monkeypatch.context() as crashing:
        crashing.setattr(Lake, "replace_where", replace_where)
        crashing.setattr(rescrub.GoldChanges, "committed", committed)
        rescrub_all(env)  # the silver step's retry policy runs it again
    assert killed == [crash]
    materialize_all(env)
    assert serving_rows(env, OUTCOMES) == [("asset", 4), ("valid", 6)]
    assert serving_rows(env, PAGES) == [(date(2024, 5, 1), 1), (date(2024, 5, 2), 1), (date(2024, 5, 3), 4)]
