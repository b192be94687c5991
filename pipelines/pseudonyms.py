"""HMAC-SHA256 pseudonyms for identifiers that are personal data (RFC 2104, FIPS 198-1).

An identifier is never masked (that would merge everyone into one "[EMAIL]" person); when it
holds personal data — an email as ``user_id`` — it is replaced by its keyed pseudonym instead:
the same input always gives the same pseudonym under one key, so DAU/MAU and funnels still count
people right, and without the key the pseudonym cannot be reversed or recomputed from a guess.

Which identifiers: ``user_id``, ``anonymous_id`` and ``session_id`` whenever a scrub value
pattern matches them; with ``pseudonymize_all_ids`` every ``user_id`` and ``anonymous_id``.
The key comes from ``EVENTLAKE_PSEUDONYM_KEY``, else is generated once into
``<data_dir>/pseudonym_key`` (mode 0600). Changing the key changes every pseudonym: people
counted before and after the change are counted twice across it. ``event_id`` is left as is
(it is the dedup key shared with bronze and quarantine).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.scrub_rules import load_rules
from pipelines.scrubbing import Scrubber

#: Prefix of every pseudonym, so analysts can tell a pseudonym from a client id.
PREFIX = "hmac:"
_PSEUDONYM = re.compile(re.escape(PREFIX) + "[0-9a-f]{32}")
PERSONAL_ID_COLUMNS = ("user_id", "anonymous_id", "session_id")
ALWAYS_PSEUDONYMIZED = ("user_id", "anonymous_id")


def load_key(key: str | None, path: Path) -> bytes:
    """The HMAC key: ``key`` (``EVENTLAKE_PSEUDONYM_KEY``) when set, else the key file ``path``,
    generated on first use (64 hex characters, mode 0600).

    Raises:
        OSError: the key file cannot be read or created.
    """
    if key is not None:
        return key.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # created meanwhile by another run: read that one
            return _read(path)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_text().strip()
    if not key:
        raise OSError(f"{path} is empty: delete it to generate a new key, or set EVENTLAKE_PSEUDONYM_KEY")
    return key.encode()


@dataclass
class Pseudonymizer:
    """Replaces identifiers by ``hmac:<32 hex>`` (HMAC-SHA256 truncated to 128 bits).

    ``count`` is how many distinct identifiers were replaced (for the run's report).
    """

    key: bytes
    scrubber: Scrubber
    all_ids: bool = False
    count: int = field(default=0)

    def pseudonym(self, value: str) -> str:
        """The pseudonym of ``value`` under this key (deterministic)."""
        return PREFIX + hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def tombstone(self, value: str) -> str:
        """The keyed hash an erasure keeps of an identifier ``value`` (in silver form):
        HMAC-SHA256 under this key of ``"erasure\\0" + value``, 32 hex digits. Domain-separated from
        :meth:`pseudonym`, so a tombstone never equals a pseudonym silver stores
        (:mod:`pipelines.erasure`)."""
        return hmac.new(self.key, b"erasure\0" + value.encode(), hashlib.sha256).hexdigest()[:32]

    def identifier(self, column: str, value: str) -> str:
        """``value`` of identifier ``column``, pseudonymized when it holds personal data (or always
        for user/anonymous ids when ``all_ids``); pseudonyms are never pseudonymized again."""
        if _PSEUDONYM.fullmatch(value):
            return value
        if (self.all_ids and column in ALWAYS_PSEUDONYMIZED) or self.scrubber.holds_personal_data(value):
            self.count += 1
            return self.pseudonym(value)
        return value


def silver_pseudonymizer(key: str | None, key_path: Path, rules_path: Path, all_ids: bool) -> Pseudonymizer:
    """Silver's pseudonymizer: the key (:func:`load_key`), a scrubber of the scrub rules at
    ``rules_path``, and whether every user and anonymous id is pseudonymized.

    Raises:
        OSError: the key file cannot be read or created.
    """
    return Pseudonymizer(load_key(key, key_path), Scrubber(load_rules(rules_path)), all_ids)
