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

import hashlib
import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import confusables
import orjson
import polars as pl
import yaml

REDACTED = "[REDACTED]"
#: Table property of silver and the quarantine: the fingerprint (:attr:`ScrubRules.fingerprint`) of
#: the rules every row of the table was scrubbed with (:mod:`pipelines.rescrub`).
RULES_PROPERTY = "eventlake.scrubRules"
DEFAULT_RULES_PATH = Path(__file__).with_name("scrub_rules.yaml")
SENSITIVE_KEY_RULE = "sensitive_key"
SENSITIVE_PAIR_RULE = "sensitive_pair"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812-1 on a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


#: (prefix ranges as (low, high) on the leading digits, allowed lengths), per card scheme.
#: Sources: ISO/IEC 7812 issuer identification numbers as published by the schemes.
_CARD_SCHEMES: tuple[tuple[tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    (((4, 4),), frozenset({13, 16, 19})),  # Visa
    (((51, 55), (2221, 2720)), frozenset({16})),  # Mastercard
    (((34, 34), (37, 37)), frozenset({15})),  # American Express
    (((6011, 6011), (644, 649), (65, 65)), frozenset(range(16, 20))),  # Discover
    (((3528, 3589),), frozenset(range(16, 20))),  # JCB
    (((300, 305), (36, 36), (38, 39)), frozenset(range(14, 20))),  # Diners Club
    (((62, 62),), frozenset(range(16, 20))),  # UnionPay
    (((50, 50), (56, 58), (6304, 6304), (6759, 6759)), frozenset(range(12, 20))),  # Maestro
)


def is_card_number(text: str) -> bool:
    """Whether ``text`` (digits, maybe grouped by spaces/dashes) is a plausible payment card number.

    13–19 digits passing the Luhn check, with a known issuer prefix and a length that issuer uses.
    """
    digits = re.sub(r"[ -]", "", text)
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    for ranges, lengths in _CARD_SCHEMES:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return True
    return False


def is_iban(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters → 10..35, mod 97 == 1."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


VALIDATORS: dict[str, Callable[[str], bool]] = {"card_number": is_card_number, "iban": is_iban}


_KEY_CACHE_SIZE = 100_000
_TEXT_CACHE_SIZE = 200_000
_TEXT_CACHE_LENGTH = 256


@dataclass(frozen=True)
class ValuePattern:
    """One value rule: matches of ``regex`` that pass ``validator`` (if any) become ``mask``; with
    ``replace`` instead, a match becomes what ``replace`` returns for it (``None``: not a match, kept).

    ``quarantine``: the rule also applies to the quarantine's raw rows.
    """

    name: str
    regex: re.Pattern[str]
    mask: str = ""
    validator: Callable[[str], bool] | None = None
    replace: Callable[[str], str | None] | None = None
    quarantine: bool = False

    def masked(self, text: str) -> str | None:
        """What a match ``text`` becomes, or ``None`` when the rule does not apply to it after all
        (its validator fails, or ``replace`` leaves it as is)."""
        if self.replace is not None:
            result = self.replace(text)
            return None if result is None or result == text else result
        if self.validator is not None and not self.validator(text):
            return None
        return self.mask


@dataclass(frozen=True)
class ScrubRules:
    """The compiled rules of one rules file (see the module docstring for the file's format)."""

    sensitive_key: re.Pattern[str]
    sensitive_pair: re.Pattern[str]
    value_patterns: tuple[ValuePattern, ...]
    #: SHA-256 (hex, first 16 digits) of the rules file's text: which rules scrubbed a table.
    fingerprint: str = ""

    @cached_property
    def quarantine_patterns(self) -> tuple[ValuePattern, ...]:
        """The value patterns that also apply to the quarantine (``quarantine: true``)."""
        return tuple(rule for rule in self.value_patterns if rule.quarantine)

    @cached_property
    def any_rule(self) -> re.Pattern[str] | None:
        """One alternation of the pair rule and every value pattern: a text it does not match
        anywhere is left as is after a single scan instead of one per rule (the pre-filter).

        ``None`` (no pre-filter, every rule scans) when a pattern uses backreferences, which
        would point at other groups once joined, or the alternation does not compile.
        """
        parts = [self.sensitive_pair, *(rule.regex for rule in self.value_patterns)]
        if any(_BACKREFERENCE.search(part.pattern) for part in parts):
            return None
        try:
            return re.compile("|".join(_scoped(part) for part in parts))
        except re.error:
            return None

    @classmethod
    def from_file(cls, path: Path) -> ScrubRules:
        """Compile the rules in ``path``.

        Raises:
            OSError: the file cannot be read.
            ValueError: a rule is malformed (unknown validator, missing fields, bad regex).
        """
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        try:
            keys = "|".join(f"(?:{pattern})" for pattern in document["sensitive_keys"])
            patterns = tuple(
                ValuePattern(
                    name=rule["name"],
                    regex=re.compile(rule["pattern"]),
                    mask="" if "replace" in rule else rule["mask"],
                    validator=VALIDATORS[rule["validator"]] if rule.get("validator") else None,
                    replace=REPLACERS[rule["replace"]] if "replace" in rule else None,
                    quarantine=bool(rule.get("quarantine", False)),
                )
                for rule in document["value_patterns"]
                if rule.get("enabled", True)
            )
            return cls(
                sensitive_key=re.compile(keys, re.IGNORECASE),
                sensitive_pair=re.compile(
                    # The key starts where a token starts (not at every character of a long one),
                    # its first key word is found once (atomic group) and its tail is possessive:
                    # linear time on long texts, no ReDoS ("pwd" * 30,000 took 4.7 s per 100 kB).
                    rf"(?P<key>(?<![\w.-])(?>[\w.-]*?(?:{keys}))[\w.-]*+[\"']?)(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)"
                    r"(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s\"'&,;()\[\]{}<>]+)",
                    re.IGNORECASE,
                ),
                value_patterns=patterns,
                fingerprint=_fingerprint(text),
            )
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"invalid scrub rules in {path}: {exc!r}") from exc


_GLOBAL_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")
_SCOPED_FLAGS = {re.IGNORECASE: "i", re.MULTILINE: "m", re.DOTALL: "s", re.VERBOSE: "x", re.ASCII: "a"}


def _scoped(pattern: re.Pattern[str]) -> str:
    """``pattern`` as a group that keeps its own flags inside an alternation (``(?is:…)``).

    Leading global flags (``(?i)``, ``(?sm)``…) are already in ``pattern.flags``; they move into
    the group, where Python accepts them.
    """
    flags = "".join(letter for flag, letter in _SCOPED_FLAGS.items() if pattern.flags & flag)
    return f"(?{flags}:{_GLOBAL_FLAGS.sub('', pattern.pattern)})" if flags else f"(?:{pattern.pattern})"


def fold_text(text: str) -> str:
    """What the rules match against: Unicode NFKC (full-width and compatibility forms folded) and
    no format characters (category Cf: soft hyphens, zero-width spaces), which hide an ``@``."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rules_fingerprint(path: Path = DEFAULT_RULES_PATH) -> str:
    """:attr:`ScrubRules.fingerprint` of the rules file as it is now (read each call, not cached:
    what the rescrub sensor compares with the tables').

    Raises:
        OSError: the file cannot be read.
    """
    return _fingerprint(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def load_rules(path: Path = DEFAULT_RULES_PATH) -> ScrubRules:
    """The compiled rules of ``path``, cached per path."""
    return ScrubRules.from_file(path)


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


def scrub_json_texts(texts: pl.DataFrame, rules: ScrubRules) -> tuple[pl.Series, Counter[str]]:
    """Scrub the JSON texts of ``texts``' first column with ``rules`` (:meth:`Scrubber.value`).

    Returns the scrubbed texts (nulls stay null) and what each rule masked in them. A module-level
    function of plain arguments, so :class:`pipelines.parallel.RowPool` can run it on slices.

    Raises:
        orjson.JSONDecodeError: a text is not JSON.
    """
    scrubber = Scrubber(rules)
    scrubbed = [None if text is None else scrubber.json_text(text) for text in texts.to_series(0)]
    return pl.Series(texts.columns[0], scrubbed, dtype=pl.String), scrubber.counts


#: ``[v6]:port``, ``v4:port``, or a bare address (a zone id such as ``%eth0`` is kept apart).
_ADDRESS_PARTS = re.compile(r"^\[(?P<bracketed>[^\]]+)\](?P<bport>:\d{1,5})?$|^(?P<v4>[\d.]+)(?P<port>:\d{1,5})$")
#: An IPv4 address inside a span that is not an address as a whole (``[198.51.100.7:9092]``).
_IPV4_INSIDE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


def _network(address: str) -> str | None:
    """The network of a bare address: IPv4 /24, IPv6 /48, IPv4-mapped IPv6 ``::ffff:`` + the IPv4
    /24 (its /120). ``None`` if not an IP. A zone id (``fe80::1%eth0``) is dropped."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{_network(str(ip.ipv4_mapped))}"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def truncate_ip(address: str | None) -> str | None:
    """The ``ip`` column's value: the address's network with host bits zeroed, without brackets or
    port (IPv4 /24, IPv6 /48, IPv4-mapped IPv6 ``::ffff:a.b.c.0``); ``None`` if not an IP.

    /24 and /48 are the prefixes Google Analytics' IP anonymization zeroes (the last octet of
    IPv4, the last 80 bits of IPv6); see ``docs/privacy.md``.
    """
    if not address:
        return None
    address = address.strip()
    parts = _ADDRESS_PARTS.match(address)
    if parts:
        address = parts["bracketed"] or parts["v4"]
    return _network(address)


def _text_network(address: str) -> str | None:
    """:func:`_network` of an address found in text, its zone id kept; ``None`` for what is no
    address, or nobody's: ``::/48`` (``::1``, ``::``, and Python slices such as ``[::2]``), and a
    two-group IPv6 whose first group is a short word (``Db::Add1``, ``10::1``)."""
    bare, _, zone = address.partition("%")
    network = _network(bare)
    if network is None or network == "::":
        return None
    if "." not in bare and bare.count(":") < 3 and len(bare.split(":", 1)[0]) < 3:
        return None
    return f"{network}%{zone}" if zone else network


def truncate_ip_text(match: str) -> str | None:
    """An address found in text, truncated as :func:`truncate_ip` does, its brackets, zone id and
    port kept (``[2001:db8::1]:443`` → ``[2001:db8::]:443``). A span that is no address as a whole
    has the IPv4 addresses inside it truncated (``[198.51.100.7:9092]`` → ``[198.51.100.0:9092]``).
    ``None`` when nothing in ``match`` is an address."""
    parts = _ADDRESS_PARTS.match(match)
    network = None
    if not parts:
        network = _text_network(match)
    elif parts["bracketed"]:
        inner = _text_network(parts["bracketed"])
        network = None if inner is None else f"[{inner}]{parts['bport'] or ''}"
    elif (v4 := _network(parts["v4"])) is not None:
        network = f"{v4}{parts['port']}"
    if network is not None:
        return network
    inside = _IPV4_INSIDE.sub(lambda m: _network(m.group(0)) or m.group(0), match)
    return inside if inside != match else None


#: Named replacements a value pattern may use (``replace:`` in the rules file).
REPLACERS: dict[str, Callable[[str], str | None]] = {"truncate_ip": truncate_ip_text}
