"""active_users_breakdown and the users source: the ecom sample against its own rows (Polars), and
hand-made devices, locations and attribute versions through the API and Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.user_attributes import UsersLoad, load_user_attributes
from tests.conftest import SAMPLES, ApiServer, Env, materialize_all
from tests.integration.test_end_to_end import replay_cli
from tests.unit.test_enrichment import ANDROID_CHROME, IPHONE_SAFARI, WINDOWS_CHROME
from warehouse.lake.tables import USER_ATTRIBUTES

pytestmark = pytest.mark.integration

ECOM = "ecom_scenarios_2024"
GENERIC = "eventlake-tests/1.0"  # a sender that says nothing about its platform (not a known crawler)


@pytest.fixture
def users_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Where the test writes its users source (EVENTLAKE_USERS_PATH), for in-process runs."""
    path = tmp_path / "users.csv"
    monkeypatch.setenv("EVENTLAKE_USERS_PATH", str(path))
    yield path


def breakdown(env: Env, app: str, prefix: str = "") -> dict[tuple[date, str, str], int]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select day, breakdown, value, active_users from active_users_breakdown"
            " where app = ? and starts_with(breakdown, ?)",
            [app, prefix],
        ).fetchall()
    finally:
        con.close()
    return {(day, name, value): count for day, name, value, count in rows}


def test_ecom_attributes_valid_at_event_time_match_the_rows_that_recorded_them(
    api: ApiServer, env: Env, users_path: Path
) -> None:
    # The sample users file holds each ecom user's versions; every raw row records the values valid
    # at its own time, so people per day and value from the rows is the independent answer.
    users_path.write_bytes((SAMPLES / f"{ECOM}_users.csv").read_bytes())
    replay_cli(api, f"{ECOM}.csv.gz")
    materialize_all(env)

    raw = pl.read_csv(SAMPLES / f"{ECOM}.csv.gz", infer_schema=False).with_columns(
        pl.col("timestamp").str.slice(0, 10).str.to_date().alias("day")
    )
    expected = {}
    for attribute in ("acquisition_channel", "user_cohort", "user_lifecycle"):
        per_value = raw.group_by("day", attribute).agg(pl.col("user_id").n_unique().alias("people"))
        expected |= {(d, f"user.{attribute}", v): n for d, v, n in per_value.iter_rows()}
    assert breakdown(env, ECOM, "user.") == expected
    # the replay's own agent names no platform: every active person counts under (unknown)
    dau = raw.group_by("day").agg(pl.col("user_id").n_unique()).rows()
    platform = breakdown(env, ECOM, "platform")
    assert platform == {(d, "platform", "(unknown)"): n for d, n in dau}


def _post(api: ApiServer, payloads: list[dict[str, object]]) -> None:
    response = api.post("/v1/events", json=[{"app": "devices", **p} for p in payloads])
    assert response.status_code == 202, response.text


def test_hand_made_devices_locations_and_attribute_versions(api: ApiServer, env: Env, users_path: Path) -> None:
    users_path.write_text(
        "user_id,valid_from,plan,company,email\n"
        "u1,2024-05-01T00:00:00Z,free,Acme,\n"
        "u1,2024-05-01T11:00:00Z,pro,Acme,\n"  # u1 upgrades between their two events of the day
        "u3,2024-05-02,pro,,\n"  # valid only from the next day; no company
        "jane@example.com,,enterprise,Initech,jane@example.com\n"  # an email id: joined through its pseudonym
        "\n"  # a trailing blank line is no row
    )
    _post(
        api,
        [
            {
                "uuid": "1",
                "timestamp": "2024-05-01T10:00:00Z",
                "user": "u1",
                "userAgent": IPHONE_SAFARI,
                "location": "Lyon, France",
            },
            # the same person in the iOS app (its SDK context beats the web view's agent)
            {
                "uuid": "2",
                "timestamp": "2024-05-01T12:00:00Z",
                "user": "u1",
                "userAgent": IPHONE_SAFARI,
                "context": {"library": {"name": "analytics-swift"}},
                "location": {"countryCode": "FR"},
            },
            {
                "uuid": "3",
                "timestamp": "2024-05-01T09:00:00Z",
                "user": "u2",
                "userAgent": WINDOWS_CHROME,
                "location": {"country": "Germany"},
            },
            {"uuid": "4", "timestamp": "2024-05-01T13:00:00Z", "user": "u3", "userAgent": GENERIC},
            {"uuid": "5", "timestamp": "2024-05-01T14:00:00Z", "user": "jane@example.com", "userAgent": ANDROID_CHROME},
            {
                "uuid": "6",
                "timestamp": "2024-05-01T15:00:00Z",
                "user": "crawler",
                "userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)",
            },
        ],
    )
    materialize_all(env)
    d = date(2024, 5, 1)
    rows = breakdown(env, "devices")
    assert {k[1:]: n for k, n in rows.items() if k[1] in ("platform", "device_type", "country")} == {
        ("platform", "web"): 3,  # u1 (Safari), u2, jane; the bot is not a person
        ("platform", "ios"): 1,  # u1 again
        ("platform", "(unknown)"): 1,  # u3
        ("device_type", "smartphone"): 2,  # u1, jane
        ("device_type", "desktop"): 1,
        ("device_type", "(unknown)"): 1,
        ("country", "FR"): 1,  # u1 twice, once
        ("country", "DE"): 1,
        ("country", "(unknown)"): 2,
    }
    assert {k[1:]: n for k, n in rows.items() if k[1].startswith("user.")} == {
        ("user.plan", "free"): 1,  # u1 at 10:00
        ("user.plan", "pro"): 1,  # u1 at 12:00 (u3's pro starts the next day)
        ("user.plan", "enterprise"): 1,
        ("user.plan", "(none)"): 2,  # u2 (no row), u3 (not yet)
        ("user.company", "Acme"): 1,
        ("user.company", "Initech"): 1,
        ("user.company", "(none)"): 2,
        ("user.email", "[EMAIL]"): 1,  # scrubbed like silver's text: the mart is served
        ("user.email", "(none)"): 3,
    }
    assert {k[0] for k in rows} == {d}

    # An edited users source recomputes the mart without new events: u2 has been on "team" all along.
    users_path.write_text(users_path.read_text() + "u2,,team,Globex,\n")
    materialize_all(env)
    plans = {k[2]: n for k, n in breakdown(env, "devices", "user.plan").items()}
    assert plans == {"free": 1, "pro": 1, "enterprise": 1, "team": 1, "(none)": 1}

    # A bad row does not stop the run: the last good load stays, the check says which line, and the
    # dashboards' snapshot still gets the new events.
    users_path.write_text(users_path.read_text() + ",,gold,\n")
    _post(api, [{"uuid": "7", "timestamp": "2024-05-02T10:00:00Z", "user": "u3", "userAgent": GENERIC}])
    result = materialize_all(env)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "users_source_valid"]
    assert not check.passed and "1 row(s) without a user_id (line 8)" in check.metadata["error"].value
    assert {k[2]: n for k, n in breakdown(env, "devices", "user.plan").items() if k[0] == d} == plans
    assert breakdown(env, "devices", "user.plan")[(date(2024, 5, 2), "user.plan", "pro")] == 1  # u3's version
    served = duckdb.connect(str(env.serving), read_only=True)
    try:
        assert served.execute("select dau from daily_active_users where app = 'devices' order by day").fetchall() == [
            (4,),
            (1,),
        ]
    finally:
        served.close()


def test_a_bad_users_source_fails_with_its_lines_and_keeps_the_loaded_versions(env: Env, users_path: Path) -> None:
    users_path.write_text("user_id,plan\nu1,free\n")
    pseudonymizer = env.resources()["silver_step"].pseudonymizer()

    def load(run_id: str) -> UsersLoad:
        return load_user_attributes(env.lake, users_path, pseudonymizer, run_id)

    first = load("run-1")
    assert (first.rows, first.users, first.changed) == (1, 1, True)
    assert load("run-2").changed is False  # same content: no commit

    users_path.write_text(
        "user_id,valid_from,plan\nu1,2024-01-01,pro\n,2024-01-02,free\nu2,last tuesday,pro\nu1,2024-01-01,team\n"
    )
    with pytest.raises(ValueError) as failure:
        load("run-3")
    assert str(failure.value).endswith(
        "1 row(s) without a user_id (line 3); "
        "1 row(s) with a valid_from that is not an ISO 8601 date or time (line 4); "
        "2 row(s) with the same app, user_id and valid_from (line 2, 5)"
    )
    kept = env.lake.dataset(USER_ATTRIBUTES).to_table(columns=["user_id", "attribute", "value"]).to_pylist()
    assert kept == [{"user_id": "u1", "attribute": "plan", "value": "free"}]

    users_path.write_text("id,plan\nu1,free\n")
    with pytest.raises(ValueError, match="no user_id column"):
        load("run-4")
    users_path.write_text("user_id,valid_to, plan\nu1,2024-01-01,free\n")  # valid_to is computed; padded name
    with pytest.raises(ValueError, match=r"column names \['valid_to', ' plan'\]"):
        load("run-5")
