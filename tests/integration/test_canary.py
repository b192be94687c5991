"""Canary corpus: hand-written hostile events through the whole pipeline; no canary secret survives.

Each canary is a secret placed where clients really leak them: URLs and referrers, nested
properties, error stack traces, headers copied into context, base64-wrapped credentials,
URL-encoded emails, mixed-case and look-alike keys. After ingest (native and Segment routes) and a
full materialization, none of the secrets may appear in silver, gold, the serving snapshot, run
metadata, the pipeline's or the API's log, nor in any file of the silver and quarantine tables (data,
Delta log, checkpoints) or the DuckDB files; ordinary values (prices, product ids, timestamps, UUIDs)
must be unchanged. Full client IPs are canaries too: only bronze, the raw zone, keeps them.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest

from tests.conftest import ApiServer, Env, materialize_all, stored_text
from warehouse.lake.tables import EVENTS, RAW_EVENTS, REJECTED_EVENTS

pytestmark = pytest.mark.integration

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnktand0LXN1YmplY3QifQ.Q2FuYXJ5U2lnbmF0dXJl"
BASIC = base64.b64encode(b"admin:canary-basic-pw-77").decode()

#: (the secret that must disappear, where it is placed) — URL, referrer, property or stack trace.
CANARIES: list[tuple[str, dict[str, object]]] = [
    ("canary-pw-01", {"page": "https://shop.example/login?password=canary-pw-01&step=2"}),
    ("canary-pw-02", {"referrer": "https://shop.example/reset?pwd=canary-pw-02"}),
    ("canary-tok-03", {"page": "https://shop.example/cb?access_token=canary-tok-03#x"}),
    ("canary-tok-04", {"page": "https://shop.example/cb?Token=canary-tok-04"}),
    ("canary-key-05", {"page": "https://api.example/v1?api_key=canary-key-05"}),
    ("canary-key-06", {"page": "https://api.example/v1?X-Api-Key=canary-key-06"}),
    ("jane.canary07@example.com", {"page": "https://shop.example/u?email=jane.canary07@example.com"}),
    ("jane.canary08%40example.com", {"page": "https://shop.example/u?next=jane.canary08%40example.com"}),
    ("canary09@example.org", {"referrer": "https://mail.example/?to=canary09@example.org"}),
    ("canary-pw-10", {"events": {"form_submit": {"password": "canary-pw-10"}}}),
    ("canary-pw-11", {"events": {"form_submit": {"Password": "canary-pw-11"}}}),
    ("canary-pw-12", {"events": {"form_submit": {"USER_PASSWORD": "canary-pw-12"}}}),
    # form_submit.fields stays an array throughout: a type change would be quarantined (type_conflict)
    ("canary-pw-13", {"events": {"form_submit": {"fields": [{"login": {"passwd": "canary-pw-13"}}]}}}),
    ("canary-pw-14", {"events": {"form_submit": {"fields": [{"name": "a"}, {"secret": "canary-pw-14"}]}}}),
    ("canary-tok-15", {"events": {"api_call": {"headers": {"Authorization": "Bearer canary-tok-15"}}}}),
    ("canary-tok-16", {"events": {"api_call": {"note": "sent Bearer canary-tok-16xx to the api"}}}),
    ("canary-ck-17", {"events": {"api_call": {"headers": {"Cookie": "sid=canary-ck-17"}}}}),
    ("canary-ck-18", {"events": {"api_call": {"set-cookie": "canary-ck-18"}}}),
    ("4111111111111111", {"events": {"checkout": {"card_number": "4111111111111111"}}}),
    ("5555555555554444", {"events": {"checkout": {"note": "card 5555555555554444 declined"}}}),
    ("4012 8888 8888 1881", {"events": {"checkout": {"note": "paid with 4012 8888 8888 1881"}}}),
    ("3782-822463-10005", {"events": {"checkout": {"note": "amex 3782-822463-10005"}}}),
    ("6011111111111117", {"page": "https://shop.example/pay?ref=6011111111111117"}),
    ("canary-cvv-24", {"events": {"checkout": {"cvv": "canary-cvv-24"}}}),
    ("canary-ssn-25", {"events": {"profile": {"SSN": "canary-ssn-25"}}}),
    ("DE89370400440532013000", {"events": {"payout": {"account": "DE89370400440532013000"}}}),
    ("GB82 WEST 1234 5698 7654 32", {"events": {"payout": {"note": "to GB82 WEST 1234 5698 7654 32"}}}),
    (JWT, {"events": {"api_call": {"id_token_copy": f"got {JWT} back"}}}),
    (JWT, {"page": f"https://shop.example/cb#state=1&t={JWT}"}),
    (BASIC, {"events": {"api_call": {"header": f"Authorization: Basic {BASIC}"}}}),
    (BASIC, {"events": {"api_call": {"debug": f"basic {BASIC}"}}}),
    ("sk_live_canary31abcdefgh", {"events": {"errors": {"message": "stripe key sk_live_canary31abcdefgh rejected"}}}),
    ("AKIACANARY3200000000", {"events": {"errors": {"message": "aws AKIACANARY3200000000 denied"}}}),
    (
        "ghp_canary33canary33canary33canary33canary",
        {"events": {"errors": {"stackTrace": "ghp_canary33canary33canary33canary33canary"}}},
    ),
    ("canary-pw-34", {"events": {"errors": {"stackTrace": "at db.connect(password=canary-pw-34)\n at main()"}}}),
    ("canary-pw-35", {"events": {"errors": {"stackTrace": 'Error: config {"password": "canary-pw-35"}'}}}),
    ("canary-tok-36", {"events": {"errors": {"stackTrace": "request failed token: canary-tok-36 at fetch"}}}),
    ("canary-tok-37", {"events": {"errors": {"stackTrace": "GET /cb?access_token=canary-tok-37 500"}}}),
    ("canary38@example.com", {"events": {"errors": {"stackTrace": "user canary38@example.com not found"}}}),
    ("canary-key-39", {"events": {"errors": {"message": "API_KEY=canary-key-39 invalid"}}}),
    ("canary-pw-40", {"events": {"form_submit": {"pаssword": "canary-pw-40"}}}),  # Cyrillic а
    ("canary-pw-41", {"events": {"form_submit": {"ｐａｓｓｗｏｒｄ": "canary-pw-41"}}}),  # full-width
    ("canary42＠example.com", {"events": {"profile": {"contact": "canary42＠example.com"}}}),  # full-width @
    ("canary-pw-43", {"events": {"form_submit": {"pass-word": "canary-pw-43"}}}),
    ("canary-pw-44", {"events": {"form_submit": {"fields": [[[{"pwd": "canary-pw-44"}]]]}}}),
    ("canary-tok-45", {"location": "Berlin token=canary-tok-45"}),
    ("canary46@example.com", {"location": {"city": "Berlin", "email": "canary46@example.com"}}),
    ("canary-pw-47", {"events": {"form_submit": {"Passphrase": "canary-pw-47"}}}),
    ("canary-key-48", {"events": {"sdk": {"privateKey": "canary-key-48"}}}),
    ("canary-otp-49", {"events": {"login": {"otp": "canary-otp-49"}}}),
    ("canary-pin-50", {"events": {"login": {"pin_code": "canary-pin-50"}}}),
    ("canary-tok-51", {"page": "https://shop.example/a?state=1&refresh_token=canary-tok-51"}),
    # Full client IPs: truncated to their network (IPv4 /24, IPv6 /48) wherever they are.
    ("198.51.100.77", {"location": {"city": "Berlin", "ip": "198.51.100.77"}}),
    ("198.51.100.178", {"ip": "198.51.100.178"}),
    ("2001:db8:cafe:1234", {"ip": "2001:db8:cafe:1234::77"}),
    ("2001:db8:beef:42", {"events": {"api_call": {"peer": "2001:db8:beef:42:5678::9"}}}),
    ("203.0.113.201", {"events": {"login": {"client_addr": "203.0.113.201"}}}),
    ("203.0.113.177", {"events": {"api_call": {"x_forwarded_for": "::ffff:203.0.113.177, 10.0.0.1"}}}),
    ("192.0.2.155", {"events": {"errors": {"stackTrace": "ConnectionError: 192.0.2.155:5432 refused\n at db()"}}}),
    ("198.51.100.123", {"page": "http://198.51.100.123:8080/admin?tab=1"}),
    ("2001:db8:fe:99", {"referrer": "https://[2001:db8:fe:99::1]:8443/from"}),
    ("198.51.100.211", {"userAgent": "probe/1.0 (via 198.51.100.211)"}),
]

#: Ordinary values that must come through unchanged (numbers and ids are never scanned).
ORDINARY = {
    "price": 5105105105105100,  # a number that looks like a card: typed numbers are not scanned
    "amount": 1299.99,
    "product_id": "SKU-9780201633610",
    "order_uuid": "3f2b1c9e-8d7a-4e6f-9a0b-1c2d3e4f5a6b",
    "ts_ms": 1714557600000,
    "quantity": 3,
}


def payloads() -> list[dict[str, object]]:
    base = {"timestamp": "2024-05-01T10:00:00Z", "app": "canary", "userAgent": UA, "events": {"view": ORDINARY}}
    return [{**base, "uuid": f"canary-{i}", "user": f"u{i}", **placement} for i, (_, placement) in enumerate(CANARIES)]


def segment_message(i: int, placement: dict[str, object]) -> dict[str, object]:
    """The same leak as a Segment message: page/referrer in context.page, the event's value as properties."""
    events = placement.get("events")
    properties = next(iter(events.values())) if isinstance(events, dict) else {}
    page = {key: placement[key] for key in ("page", "referrer") if key in placement}
    context: dict[str, object] = {
        "userAgent": placement.get("userAgent", UA),
        "page": {"url": page.get("page"), "referrer": page.get("referrer")},
    }
    for key in ("location", "ip"):
        if key in placement:
            context[key] = placement[key]
    return {
        "type": "track",
        "messageId": f"seg-canary-{i}",
        "userId": f"s{i}",
        "event": "Checkout Failed",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {**ORDINARY, **properties},
        "context": context,
    }


def segment_batch() -> dict[str, object]:
    return {"batch": [segment_message(i, placement) for i, (_, placement) in enumerate(CANARIES)]}


#: A quarantined event (its timestamp is years ahead) carrying a full IP: the quarantine keeps the
#: payload as sent except what the rules marked for it remove.
QUARANTINED_IP = "198.51.100.199"


def quarantined_payload() -> dict[str, object]:
    return {
        "uuid": "canary-quarantined",
        "app": "canary",
        "user": "uq",
        "timestamp": "2099-01-01T00:00:00Z",
        "ip": QUARANTINED_IP,
        "location": {"ip": QUARANTINED_IP},
        "events": {"view": {"note": f"from {QUARANTINED_IP}"}},
    }


def all_text(frame: pl.DataFrame) -> str:
    strings = frame.select(pl.col(pl.String)).fill_null("")
    return "\n".join("\t".join(row) for row in strings.iter_rows())


@pytest.fixture(params=["one process", "worker processes"])
def silver_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the silver step in one process, or with its per-row stages in worker processes."""
    if request.param == "worker processes":
        monkeypatch.setenv("EVENTLAKE_SILVER_WORKERS", "2")
        monkeypatch.setenv("EVENTLAKE_SILVER_PARALLEL_MIN_ROWS", "1")
    yield request.param


def test_no_canary_secret_reaches_silver_gold_serving_or_logs(
    api: ApiServer, env: Env, silver_processes: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(CANARIES) >= 60
    assert api.post("/v1/events", json=payloads()).json()["rejected"] == []
    assert api.post("/v1/batch", json=segment_batch()).json()["rejected"] == []
    assert api.post("/v1/events", json=quarantined_payload()).json()["rejected"] == []
    caplog.set_level(logging.DEBUG)
    result = materialize_all(env)
    assert pl.read_delta(env.lake.uri(REJECTED_EVENTS)).height == 1

    silver = pl.read_delta(env.lake.uri(EVENTS))
    assert silver.height == 2 * len(CANARIES) and silver["event_id"].n_unique() == silver.height
    places = {"silver": all_text(silver), "api log": api.log.read_text()}
    for path in (env.warehouse, env.serving):
        con = duckdb.connect(str(path), read_only=True)
        try:
            for (table,) in con.execute("select table_name from information_schema.tables").fetchall():
                places[f"{path.name}:{table}"] = all_text(
                    pl.from_arrow(con.sql(f'select * from "{table}"').to_arrow_table())
                )
        finally:
            con.close()
    events = result.get_asset_materialization_events()
    silver_metadata = next(e.materialization.metadata for e in events if e.asset_key.path == [EVENTS.name])
    assert silver_metadata["processes"].value == (2 if silver_processes == "worker processes" else 1)
    places["dagster metadata"] = "\n".join(str(e.materialization.metadata) for e in events)

    for column in silver.select(pl.col(pl.String)).columns:
        places[f"silver.{column}"] = "\n".join(silver[column].fill_null(""))
    del places["silver"]
    # Every file of silver and the quarantine (data, change data, Delta log JSON, checkpoints), the
    # DuckDB files byte for byte, and everything the pipeline logged.
    for table in (EVENTS, REJECTED_EVENTS):
        for name, text in stored_text(Path(env.lake.uri(table))).items():
            places[f"{table.path}/{name}"] = text
    for path in (env.warehouse, env.serving):
        places[f"{path.name} file"] = stored_text(path.parent)[path.name]
    places["pipeline log"] = caplog.text
    secrets = [secret for secret, _ in CANARIES] + [QUARANTINED_IP]
    leaks = [(secret, place) for secret in secrets for place, text in places.items() if secret in text]
    assert leaks == []
    # The quarantine keeps its row (only the address lost its host part); bronze, the raw zone, the whole of it.
    (quarantined,) = pl.read_delta(env.lake.uri(REJECTED_EVENTS)).to_dicts()
    assert quarantined["ip"] == "198.51.100.0" and '"ip":"198.51.100.0"' in quarantined["payload"].replace(" ", "")
    bronze = all_text(pl.read_delta(env.lake.uri(RAW_EVENTS)))
    assert all(address in bronze for address in ("198.51.100.77", QUARANTINED_IP, "2001:db8:cafe:1234::77"))
    # Where an address was, its network is
    locations = set(silver["location"].drop_nulls())
    assert '{"city":"Berlin","ip":"198.51.100.0"}' in {text.replace(" ", "") for text in locations}
    assert {"2001:db8:cafe::", "198.51.100.0"} <= set(silver["ip"].drop_nulls())

    # ordinary values are intact in every event that carried them
    for text in silver["properties"]:
        properties = orjson.loads(text)
        view = properties if "price" in properties else properties.get("view", properties)
        if "price" in view:
            assert {key: view[key] for key in ORDINARY} == ORDINARY
