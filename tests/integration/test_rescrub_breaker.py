"""Adversarial tests of the rescrub's records for gold (pipelines.rescrub.GoldChanges, commit 461a028):
after a rescrub of an upgraded lake (no asset flag; some days in the cold tier), gold (every served
mart, data_quality_daily, person_first_seen) must equal a warehouse built from scratch, whatever
crashes, reruns, rules changes, micro-batches or data shapes come in between."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from pipelines import rescrub
from pipelines.defs import pipeline_assets
from pipelines.scrub_rules import DEFAULT_RULES_PATH
from tests.conftest import ApiServer, Env, materialize_all
from tests.integration.test_rescrub import (
    OUTCOMES,
    PAGES,
    UPGRADED,
    build_upgraded,
    rescrub_all,
    serving_rows,
    visit,
    warehouse_rows,
)
from tests.integration.test_tiers import served

pytestmark = pytest.mark.integration

#: What the rescrub of UPGRADED gives (tests/integration/test_rescrub.py).
PAGES_AFTER = [(date(2024, 5, 1), 1), (date(2024, 5, 2), 1), (date(2024, 5, 3), 4)]
OUTCOMES_AFTER = [("asset", 4), ("valid", 6)]


@pytest.fixture
def upgraded(
    api: ApiServer, env: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> Env:
    return build_upgraded(api, env, tmp_path, setting, monkeypatch, [UPGRADED], ("2024-05-01", "2024-05-02"))


def new_rules(tmp_path: Path, setting: Callable[[str, str], None], name: str) -> None:
    """A rules change that changes no value (a comment): a new fingerprint, the same scrubbing."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(DEFAULT_RULES_PATH.read_text() + f"\n# {name}\n")
    setting("EVENTLAKE_SCRUB_RULES_PATH", str(path))


def assert_equals_fresh_build(
    env: Env, stale_aliases: frozenset[str] = frozenset(), ignore: frozenset[str] = frozenset()
) -> None:
    """Every served mart and person_first_seen equal a warehouse built from scratch over the same lake.

    ``stale_aliases``: person ids whose own person_first_seen row an incremental warehouse keeps after
    the id was linked to a user (pre-existing, without any rescrub too; no served mart reads it).
    ``ignore``: marts not compared (a divergence that is not the rescrub's)."""
    incremental = served(env)
    people = [row for row in warehouse_rows(env, "person_first_seen") if row[2] not in stale_aliases]
    env.warehouse.unlink()
    env.serving.unlink()
    materialize_all(env)
    fresh = served(env)
    differing = {
        name: (rows, fresh.get(name))
        for name, rows in incremental.items()
        if rows != fresh.get(name) and name not in ignore
    }
    fresh_people = warehouse_rows(env, "person_first_seen")
    assert differing == {}
    assert people == fresh_people


def assert_right_after_the_rescrub(env: Env) -> None:
    """Data quality's outcomes and the page views per day are the upgraded lake's after the rescrub,
    and every served mart and ``person_first_seen`` equal a from-scratch build."""
    assert serving_rows(env, OUTCOMES) == OUTCOMES_AFTER
    assert serving_rows(env, PAGES) == PAGES_AFTER
    assert_equals_fresh_build(env)


def silver_only(env: Env, **config: str) -> None:
    """The silver step alone (no gold refresh in the same run)."""
    assets = pipeline_assets(env.settings())
    result = dg.materialize(
        [*assets.derived, assets.checks],
        selection=dg.AssetSelection.assets("events", "rejected_events"),
        resources=env.resources(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=True,
        run_config={"ops": {"silver_events": {"config": config}}} if config else None,
    )
    assert result.success


# --- crashes and reruns ---------------------------------------------------------------------------


@pytest.mark.parametrize("crash", ["in finish", "after a cold commit"])
def test_a_rules_change_after_an_unfinished_rescrub_loses_nothing(
    upgraded: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    env = upgraded

    def finish(self: rescrub.GoldChanges, store: object) -> None:
        raise RuntimeError("killed in finish")

    def committed(self: rescrub.GoldChanges, day: date, attempt: int) -> None:
        raise RuntimeError("killed after a cold commit")

    with monkeypatch.context() as crashing:  # every retry of the step dies the same way: the run fails
        if crash == "in finish":
            crashing.setattr(rescrub.GoldChanges, "finish", finish)
        else:
            crashing.setattr(rescrub.GoldChanges, "committed", committed)
            # the process dies before each retry could settle: every cold attempt stays unmarked
            crashing.setattr(rescrub.GoldChanges, "settle", lambda self, cold: None)
        with contextlib.suppress(Exception):  # the step's retries may finish the run or not
            rescrub_all(env)
    new_rules(tmp_path, setting, "a rules change while the rescrub was unfinished")
    rescrub_all(env)
    materialize_all(env)
    assert_right_after_the_rescrub(env)


@pytest.mark.parametrize("sql", ["insert_rescrub_counts"])
def test_a_crash_inside_record_s_or_finish_s_transaction_rolls_back_and_the_retry_counts_once(
    upgraded: Env, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    """record(): the days are inserted, then the count insert dies; finish(): the days are tied,
    then the counts' tie dies. The transaction rolls back; the step's retry counts once."""
    env = upgraded
    real = rescrub.load_sql
    killed: list[bool] = []

    def load_sql(name: str) -> str:
        if name == sql and not killed:
            killed.append(True)
            raise RuntimeError(f"killed at {sql}")
        return real(name)

    monkeypatch.setattr(rescrub, "load_sql", load_sql)
    rescrub_all(env)
    assert killed
    materialize_all(env)
    assert serving_rows(env, OUTCOMES) == OUTCOMES_AFTER
    assert serving_rows(env, PAGES) == PAGES_AFTER


def test_a_crash_during_gold_s_recheck_then_the_next_run(upgraded: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gold's refresh of person_first_seen dies in the recheck (after the moves were inserted): its
    transaction rolls back and the next run rechecks once."""
    env = upgraded
    from pipelines import first_seen

    silver_only(env, mode="rescrub")
    real = first_seen.load_sql
    killed: list[bool] = []

    def load_sql(name: str) -> str:
        if name == "update_rechecked_first_seen" and not killed:
            killed.append(True)
            raise RuntimeError("killed in the recheck")
        return real(name)

    with monkeypatch.context() as crashing:
        crashing.setattr(first_seen, "load_sql", load_sql)
        with contextlib.suppress(Exception):  # the gold step's retry (if any) gets past it
            materialize_all(env)
    assert killed
    materialize_all(env)
    assert_right_after_the_rescrub(env)


def test_two_rescrubs_in_a_row_then_another_rules_change(
    upgraded: Env, tmp_path: Path, setting: Callable[[str, str], None]
) -> None:
    env = upgraded
    rescrub_all(env)
    rescrub_all(env)
    materialize_all(env)
    new_rules(tmp_path, setting, "a later rules change")
    rescrub_all(env)
    materialize_all(env)
    assert_right_after_the_rescrub(env)


# --- what comes in between ------------------------------------------------------------------------


def test_micro_batches_between_the_rescrub_and_gold(upgraded: Env, api: ApiServer) -> None:
    """The rescrub's silver step, then hot micro-batches (an asset-first newcomer, a returning
    person) before any gold refresh: gold reads the rescrub's version and theirs in one go."""
    env = upgraded
    silver_only(env, mode="rescrub")
    later = [
        visit("l1", "asset-first", "2024-05-04T08:00:00Z", "/style.css"),
        visit("l2", "late-new", "2024-05-04T09:00:00Z", "/robots.txt"),
        visit("l3", "late-new", "2024-05-04T10:00:00Z", "/"),
        visit("l4", "asset-only", "2024-05-01T09:00:00Z", "/"),  # late: the asset-only person's first page, cold day
    ]
    assert api.post("/v1/events", json=later).json()["rejected"] == []
    silver_only(env)
    materialize_all(env)
    rescrub_all(env)  # the purge and the fingerprint
    materialize_all(env)
    assert_equals_fresh_build(env)


def test_no_cold_tier(
    api: ApiServer, env: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    build_upgraded(api, env, tmp_path, setting, monkeypatch, [UPGRADED], ())
    rescrub_all(env)
    materialize_all(env)
    assert_right_after_the_rescrub(env)


def test_every_row_an_asset_all_cold(
    api: ApiServer, env: Env, tmp_path: Path, setting: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = [visit(f"x{i}", f"p{i % 3}", f"2024-05-0{1 + i % 3}T1{i}:00:00Z", f"/f{i}.png") for i in range(6)]
    build_upgraded(api, env, tmp_path, setting, monkeypatch, [assets], ("2024-05-01", "2024-05-02", "2024-05-03"))
    rescrub_all(env)
    materialize_all(env)
    assert serving_rows(env, OUTCOMES) == [("asset", 6)]
    assert warehouse_rows(env, "person_first_seen") == []
    assert_equals_fresh_build(env)


# --- data shapes ----------------------------------------------------------------------------------


def stitched_events() -> list[list[dict[str, object]]]:
    ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"

    def anon(uuid: str, session: str, at: str, path: str, user: str | None = None) -> dict[str, object]:
        event: dict[str, object] = {
            "uuid": uuid,
            "app": "shop",
            "session": session,
            "timestamp": at,
            "page": f"https://shop.example{path}",
            "userAgent": ua,
            "events": {"page_view": {}},
        }
        if user:
            event["user"] = user
        return event

    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    return [
        [
            # An anonymous visitor (session only) whose first visit is an asset, weeks before signing in.
            anon("s1", "sess-9", "2024-04-10T23:30:00Z", "/logo.png"),
            anon("s2", "sess-9", "2024-04-11T00:30:00Z", "/"),  # anonymous page, next UTC day
            # A person whose first request is an asset at 23:30 UTC (another day in Asia/Tokyo / LA).
            visit("t1", "tz", "2024-04-30T23:30:00Z", "/app.js"),
            visit("t2", "tz", "2024-05-02T06:00:00Z", "/cart"),
            # Two assets before the first page, weeks apart (a cohort week changes).
            visit("w1", "weeks", "2024-04-12T10:00:00Z", "/a.woff2"),
            visit("w2", "weeks", "2024-04-20T10:00:00Z", "/b.svg"),
            visit("w3", "weeks", "2024-05-03T10:00:00Z", "/pricing"),
            visit("n1", "normal", "2024-04-11T12:00:00Z", "/"),
            visit("n2", "normal", "2024-05-03T12:00:00Z", "/cart"),
            {**visit("b1", "bot", "2024-04-11T12:00:00Z", "/x.png"), "userAgent": bot},
            {**visit("b2", "bot", "2024-05-03T12:00:00Z", "/"), "userAgent": bot},
        ],
        [
            # Later: the session signs in; the anonymous history (asset first) joins the user.
            anon("s3", "sess-9", "2024-05-03T11:00:00Z", "/account", user="stitched"),
        ],
    ]


@pytest.mark.parametrize("timezone", ["Asia/Tokyo"])
def test_identity_stitching_bots_time_zones_and_cohorts(
    api: ApiServer,
    env: Env,
    tmp_path: Path,
    setting: Callable[[str, str], None],
    monkeypatch: pytest.MonkeyPatch,
    timezone: str,
) -> None:
    setting("EVENTLAKE_REPORTING_TIMEZONE", timezone)
    cold = ("2024-04-10", "2024-04-11", "2024-04-12", "2024-04-20", "2024-04-30")
    build_upgraded(api, env, tmp_path, setting, monkeypatch, stitched_events(), cold)
    rescrub_all(env)
    materialize_all(env)
    first_seen = {person: str(at)[:16] for _, _, person, at in warehouse_rows(env, "person_first_seen")}
    assert first_seen["stitched"] == "2024-04-11 00:30"  # the anonymous page, not the asset before it
    assert first_seen["weeks"] == "2024-05-03 10:00" and first_seen["tz"] == "2024-05-02 06:00"
    assert "bot" not in first_seen
    assert_equals_fresh_build(env, stale_aliases=frozenset({"sess-9"}))


def test_the_rescrub_with_no_gold_warehouse_yet(upgraded: Env) -> None:
    """The warehouse file is lost before the rescrub (its records go to a new one): gold's first
    build after it counts silver as it is, once."""
    env = upgraded
    env.warehouse.unlink()
    env.serving.unlink()
    rescrub_all(env)
    materialize_all(env)
    assert_right_after_the_rescrub(env)


#: An erasure of a cold row makes data_quality_daily differ from a fresh build without any rescrub
#: too (valid 9 / duplicate 1 incrementally, valid 8 / duplicate 2 rebuilt): not the rescrub's.
ERASURE_DQ = frozenset({"data_quality_daily"})


def test_an_erasure_before_the_rescrub(upgraded: Env) -> None:
    """An erasure of the person whose first visit was an asset (cold day), then the rescrub: both
    record days in gold_recompute_days; the rescrub's finish deletes the erasure's recomputed ones."""
    from tests.integration.test_erasure import erase_job, request_for

    env = upgraded
    erase_job(env, request_for(env, "asset-first"))
    rescrub_all(env)
    materialize_all(env)
    people = {person for _, _, person, _ in warehouse_rows(env, "person_first_seen")}
    assert people == {"hot-asset", "hot-first", "normal"}
    assert_equals_fresh_build(env, ignore=ERASURE_DQ)


def test_an_erasure_between_the_rescrub_and_gold_leaves_the_person_erased(upgraded: Env) -> None:
    """Regression (breaker, HIGH): the rescrub re-inserted every row of the rewritten hot partitions
    into silver's change feed; an erasure before gold's next run deleted the person's rows, but
    refresh_first_seen took the re-inserted rows as candidates and the person came back."""
    from tests.integration.test_erasure import erase_job, request_for

    env = upgraded
    silver_only(env, mode="rescrub")  # the rescrub job's gold step did not run (failed, killed)
    erase_job(env, request_for(env, "asset-first"))
    rescrub_all(env)
    materialize_all(env)
    people = {person for _, _, person, _ in warehouse_rows(env, "person_first_seen")}
    assert people == {"hot-asset", "hot-first", "normal"}
    assert_equals_fresh_build(env, ignore=ERASURE_DQ)


def test_an_erasure_after_a_micro_batch_s_silver_step_before_gold_leaves_the_person_erased(
    upgraded: Env, api: ApiServer
) -> None:
    """Regression (breaker, HIGH, without a rescrub): rows a micro-batch inserted and an erasure
    deleted before gold caught up are no first-seen candidates (ChangeFeed.read_surviving)."""
    from tests.integration.test_erasure import erase_job, request_for

    env = upgraded
    rescrub_all(env)
    materialize_all(env)
    assert api.post("/v1/events", json=[visit("z1", "zed", "2024-05-03T15:00:00Z", "/")]).json()["rejected"] == []
    silver_only(env)  # the micro-batch's gold step did not run (failed, killed)
    erase_job(env, request_for(env, "zed"))
    materialize_all(env)
    people = {person for _, _, person, _ in warehouse_rows(env, "person_first_seen")}
    assert "zed" not in people


def test_a_crash_between_the_tie_and_the_property_commit_the_rescrub_job_s_own_gold_is_right(
    upgraded: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = upgraded
    real = rescrub.set_table_properties
    killed: list[bool] = []

    def set_table_properties(*args: object, **kwargs: object) -> int:
        if not killed:
            killed.append(True)
            raise RuntimeError("killed before the property commit")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rescrub, "set_table_properties", set_table_properties)
    rescrub_all(env)
    assert killed
    assert serving_rows(env, OUTCOMES) == OUTCOMES_AFTER
    assert serving_rows(env, PAGES) == PAGES_AFTER
