"""Scrubbing: secrets and personal data never reach silver.

The rules are data, in ``pipelines/scrub_rules.yaml`` (or ``EVENTLAKE_SCRUB_RULES_PATH``):

* values under sensitive keys (password, token, api key, authorization, cookie, ssn, card
  number, cvv, iban … — case-insensitive, anywhere in nested objects and in URL query strings)
  become ``[REDACTED]``; ``key=value`` / ``key: value`` pairs with those keys inside free text
  (stack traces, messages) have their value replaced by ``[REDACTED]``;
* value patterns (bearer/basic credentials, JWTs, common API key shapes, emails — also
  ``%40``-encoded —, payment card numbers, IBANs, optionally phone numbers) are masked in every
  string value. A card number must pass the Luhn check and match an issuer's prefix and length
  (:func:`is_card_number`); an IBAN must pass ISO 13616's mod-97 check (:func:`is_iban`).
  Numbers (prices, timestamps in ms, numeric ids) are never scanned;
* IP addresses (IPv4, IPv6, IPv4-mapped IPv6, with or without a port or brackets) are truncated to
  their network wherever they appear, by the ``ip_address`` value pattern (:func:`truncate_ip_text`)
  and, for the ``ip`` column, :func:`truncate_ip`: IPv4 /24, IPv6 /48, IPv4-mapped /120 (the /24 of
  the IPv4 address it carries). Rules marked ``quarantine: true`` also apply to the quarantine's
  raw rows (:meth:`Scrubber.quarantine_text`).

Identifiers (event_id, user_id, anonymous_id, session_id) are not passed through these rules.
Text is matched after Unicode NFKC normalization (full-width and compatibility look-alikes
fold to ASCII); the stored value keeps its characters outside the masked spans.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import confusables
import orjson
import polars as pl

from pipelines.scrub_rules import SENSITIVE_KEY_RULE, SENSITIVE_PAIR_RULE, ScrubRules, ValuePattern, load_rules

REDACTED = "[REDACTED]"


_KEY_CACHE_SIZE = 100_000
_TEXT_CACHE_SIZE = 200_000
_TEXT_CACHE_LENGTH = 256


def fold_text(text: str) -> str:
    """What the rules match against: Unicode NFKC (full-width and compatibility forms folded) and
    no format characters (category Cf: soft hyphens, zero-width spaces), which hide an ``@``."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


@dataclass
class Scrubber:
    """Applies one set of rules and counts what each rule masked (the per-batch scrub report).

    ``counts`` maps a rule name (``sensitive_key``, ``sensitive_pair`` or a value pattern's
    name) to the number of values it masked.
    """

    rules: ScrubRules = field(default_factory=load_rules)
    counts: Counter[str] = field(default_factory=Counter)
    _keys: dict[str, bool] = field(default_factory=dict, repr=False)
    _texts: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict, repr=False)

    def is_sensitive_key(self, key: str) -> bool:
        """Whether a property or query-string key names a secret (``X-Api-Key``, ``userPassword``…).

        A non-ASCII key is first folded to its ASCII look-alike: Unicode NFKC (full-width forms)
        then the Unicode TR39 confusables skeleton (``pаssword`` with a Cyrillic ``а``), via the
        ``confusables`` package.
        """
        known = self._keys.get(key)
        if known is not None:
            return known
        folded = key
        if not folded.isascii():
            folded = confusables.normalize(unicodedata.normalize("NFKC", folded), prioritize_alpha=True)[0]
        sensitive = self.rules.sensitive_key.search(re.sub(r"[-. ]", "_", folded)) is not None
        if len(self._keys) < _KEY_CACHE_SIZE:  # keys repeat across events: decide each once
            self._keys[key] = sensitive
        return sensitive

    def text(self, text: str) -> str:
        """Mask secret ``key=value`` pairs and every value pattern inside free text.

        Short texts are scrubbed once per distinct value (component names, SKUs and tags repeat
        across events); a repeat adds the same counts to the report as the first time.
        """
        cached = self._texts.get(text)
        if cached is not None:
            result, masked = cached
            if masked:
                self.counts.update(masked)
            return result
        # Count this text's masks apart (for the cache), then add them to the report.
        report, self.counts = self.counts, Counter()
        try:
            result = self._scrub_text(text)
        finally:
            masked, self.counts = self.counts, report
        report.update(masked)
        if len(text) <= _TEXT_CACHE_LENGTH and len(self._texts) < _TEXT_CACHE_SIZE:
            self._texts[text] = (result, masked)
        return result

    def _scrub_text(self, original: str) -> str:
        # First on the text as sent, so characters outside masked spans stay as they are; then on
        # its folded form (fold_text), for secrets only look-alike characters hid. Only when that
        # second pass masks something is the folded text kept.
        masked = self._mask(original)
        if masked.isascii():
            return masked
        folded = fold_text(masked)
        if folded == masked:
            return masked
        refolded = self._mask(folded)
        return refolded if refolded != folded else masked

    def _mask(self, text: str) -> str:
        if self.rules.any_rule is not None and self.rules.any_rule.search(text) is None:
            return text  # the pre-filter: no rule can match anywhere

        def pair(match: re.Match[str]) -> str:
            self.counts[SENSITIVE_PAIR_RULE] += 1
            return f"{match['key']}{match['sep']}{match['quote']}{REDACTED}"

        text = self.rules.sensitive_pair.sub(pair, text)
        for rule in self.rules.value_patterns:
            text = rule.regex.sub(self._masker(rule), text)
        return text

    def holds_personal_data(self, text: str) -> bool:
        """Whether a value pattern (email, card, IBAN, phone if enabled…) matches in ``text``.

        Used on identifiers, which are never masked: a matching one is pseudonymized instead.
        Counts nothing.
        """
        forms = [text] if text.isascii() else [text, fold_text(text)]
        return any(
            rule.masked(match.group(0)) is not None
            for form in forms
            for rule in self.rules.value_patterns
            for match in rule.regex.finditer(form)
        )

    def _masker(self, rule: ValuePattern) -> Callable[[re.Match[str]], str]:
        def mask(match: re.Match[str]) -> str:
            masked = rule.masked(match.group(0))
            if masked is None:
                return match.group(0)
            self.counts[rule.name] += 1
            return masked

        return mask

    def quarantine_text(self, text: str) -> str:
        """``text`` with only the rules marked ``quarantine: true`` applied (IP truncation by default).

        The quarantine keeps rows as sent, for engineers who fix rules and replay them; what those
        rules remove (full client IPs) it may not hold either.
        """
        for rule in self.rules.quarantine_patterns:
            text = rule.regex.sub(self._masker(rule), text)
        return text

    def url(self, url: str) -> str:
        """Mask sensitive query parameters and value patterns in a URL; other parts stay as they are."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        if parts.query:
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            masked = []
            for key, value in pairs:
                if self.is_sensitive_key(key):
                    self.counts[SENSITIVE_KEY_RULE] += 1
                    value = REDACTED
                # Decoded, before urlencode escapes what the patterns look for (`:` of an IPv6).
                masked.append((self.text(key), self.text(value)))
            parts = parts._replace(query=urlencode(masked, safe="[]@"))
        return self.text(urlunsplit(parts))

    def json_text(self, text: str) -> str:
        """Scrub a JSON text (:meth:`value` on its parsed form); raises ``orjson.JSONDecodeError``."""
        return orjson.dumps(self.value(orjson.loads(text))).decode()

    def value(self, value: Any) -> Any:
        """Scrub a decoded JSON value recursively: sensitive keys masked, strings scrubbed, numbers kept."""
        if isinstance(value, str):
            return self.url(value) if value.startswith(("http://", "https://")) else self.text(value)
        if isinstance(value, dict):
            # Keys are scrubbed too (maps keyed by client IP); two keys that become one keep the last value.
            return {self.text(str(key)): self._item(str(key), item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def _item(self, key: str, item: Any) -> Any:
        if self.is_sensitive_key(key):
            self.counts[SENSITIVE_KEY_RULE] += 1
            return REDACTED
        return self.value(item)


#: The column :func:`scrub_json_texts` adds: what the rules masked in a row, as a JSON object of
#: counts by rule name (``null`` when nothing was masked), so the counts survive any cut of the rows.
MASKED_COLUMN = "masked"


def scrub_json_texts(texts: pl.DataFrame, rules: ScrubRules) -> pl.DataFrame:
    """Scrub the JSON texts of ``texts``' first column with ``rules`` (:meth:`Scrubber.value`).

    Returns a frame of the same height: the first column scrubbed (nulls stay null) and
    :data:`MASKED_COLUMN`, what each rule masked in that row (sum them with :func:`masked_counts`).
    A module-level function of a frame to a frame of the same rows, so
    :class:`pipelines.parallel.RowPool` can run it on slices in any engine.

    Raises:
        orjson.JSONDecodeError: a text is not JSON.
    """
    scrubber = Scrubber(rules)
    scrubbed: list[str | None] = []
    masked: list[str | None] = []
    for text in texts.to_series(0):
        scrubbed.append(None if text is None else scrubber.json_text(text))
        masked.append(orjson.dumps(scrubber.counts).decode() if scrubber.counts else None)
        scrubber.counts.clear()
    return pl.DataFrame(
        {texts.columns[0]: scrubbed, MASKED_COLUMN: masked},
        schema={texts.columns[0]: pl.String, MASKED_COLUMN: pl.String},
    )


def masked_counts(masked: pl.Series) -> Counter[str]:
    """What the rules masked in all rows of a :data:`MASKED_COLUMN` column, by rule name."""
    counts: Counter[str] = Counter()
    for row in masked.drop_nulls():
        counts.update(orjson.loads(row))
    return counts
