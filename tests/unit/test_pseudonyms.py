"""HMAC pseudonyms for identifiers holding personal data."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

from pipelines.pseudonyms import Pseudonymizer, load_key
from pipelines.scrubbing import Scrubber
from warehouse.settings import Settings


def test_personal_ids_get_an_hmac_sha256_pseudonym_and_others_stay() -> None:
    p = Pseudonymizer(b"k", Scrubber())
    expected = "hmac:" + hmac.new(b"k", b"jane@example.com", hashlib.sha256).hexdigest()[:32]
    assert p.identifier("user_id", "jane@example.com") == expected
    assert p.identifier("session_id", "jane%40example.com") != "jane%40example.com"  # URL-encoded email too
    assert p.identifier("user_id", "u-42") == "u-42"
    assert p.identifier("user_id", "4111111111111111") == p.pseudonym("4111111111111111")  # a card number
    assert p.identifier("user_id", "1234567890123") == "1234567890123"  # fails Luhn: an ordinary id
    assert p.identifier("user_id", expected) == expected  # already a pseudonym: stable, not hashed twice
    assert p.identifier("user_id", "hmac:jane@example.com") != "hmac:jane@example.com"  # a look-alike is not
    assert p.count == 4


def test_all_ids_mode_pseudonymizes_user_and_anonymous_ids_only() -> None:
    p = Pseudonymizer(b"k", Scrubber(), all_ids=True)
    assert p.identifier("user_id", "u-42") == p.pseudonym("u-42")
    assert p.identifier("anonymous_id", "anon-1") == p.pseudonym("anon-1")
    assert p.identifier("session_id", "s-1") == "s-1"
    assert Pseudonymizer(b"other", Scrubber()).pseudonym("u-42") != p.pseudonym("u-42")


def test_the_key_is_generated_once_with_mode_0600_unless_set(tmp_path: Path) -> None:
    path = Settings(data_dir=tmp_path).pseudonym_key_path
    key = load_key(None, path)
    assert len(key) == 64 and load_key(None, path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key("set-by-operator", path) == b"set-by-operator"
