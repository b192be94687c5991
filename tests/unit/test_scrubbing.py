"""Scrubbing rules: secrets under sensitive keys, secret pairs and emails in text, IP truncation."""

from __future__ import annotations

import pytest

from pipelines.scrubbing import EMAIL_MASK, REDACTED, scrub_text, scrub_url, scrub_value, truncate_ip


def test_sensitive_keys_are_masked_at_any_depth() -> None:
    value = {
        "form": {"Password": "hunter2", "fields": [{"api_key": "k-123", "name": "x"}]},
        "accessToken": "abc",
        "X-Api-Key": "z",
        "session_cookie": "c",
        "plain": "ok",
        "card_number": "4111111111111111",
    }
    assert scrub_value(value) == {
        "form": {"Password": REDACTED, "fields": [{"api_key": REDACTED, "name": "x"}]},
        "accessToken": REDACTED,
        "X-Api-Key": REDACTED,
        "session_cookie": REDACTED,
        "plain": "ok",
        "card_number": REDACTED,
    }


def test_emails_in_free_text_are_masked() -> None:
    assert scrub_text("contact jane.doe+x@example.co.uk now") == f"contact {EMAIL_MASK} now"
    assert scrub_value({"msg": ["mail bob@corp.io"]}) == {"msg": [f"mail {EMAIL_MASK}"]}


def test_secret_pairs_in_stack_traces_are_masked() -> None:
    trace = 'Error: login failed password=s3cret&user=bob at db.connect(token: "abc.def")'
    assert scrub_text(trace) == f'Error: login failed password={REDACTED}&user=bob at db.connect(token: "{REDACTED}")'


def test_urls_lose_sensitive_query_values_and_emails() -> None:
    url = "https://shop.example/reset?token=abc123&email=jane%40example.com&page=2"
    assert scrub_url(url) == f"https://shop.example/reset?token={REDACTED}&email={EMAIL_MASK}&page=2"
    assert scrub_url("https://shop.example/a/b?q=shoes") == "https://shop.example/a/b?q=shoes"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
        ("not-an-ip", None),
        (None, None),
    ],
)
def test_ip_truncation(address: str | None, expected: str | None) -> None:
    assert truncate_ip(address) == expected


def test_secret_pair_value_stops_at_a_closing_bracket() -> None:
    # Regression: the masked value swallowed the ")" that closed the call in a stack trace.
    assert scrub_text("at login(password=hunter2) in auth.py") == f"at login(password={REDACTED}) in auth.py"
