"""The scrub rules as data: ``pipelines/scrub_rules.yaml`` (or ``EVENTLAKE_SCRUB_RULES_PATH``) loaded
into :class:`ScrubRules`, and their fingerprint (which rules a table's rows were scrubbed with)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path

import yaml

from pipelines.sensitive_values import REPLACERS, VALIDATORS

#: Table property of silver and the quarantine: the fingerprint (:attr:`ScrubRules.fingerprint`) of
#: the rules every row of the table was scrubbed with, and of silver's derivations it carries
#: (:data:`DERIVATIONS_VERSION`; :mod:`pipelines.rescrub`).
RULES_PROPERTY = "eventlake.scrubRules"
#: The shipped rules: package data of ``pipelines`` (a file on disk in a regular install).
DEFAULT_RULES_PATH = Path(str(files("pipelines").joinpath("scrub_rules.yaml")))
SENSITIVE_KEY_RULE = "sensitive_key"
SENSITIVE_PAIR_RULE = "sensitive_pair"


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


#: The version of silver's derived columns that rows already stored need when it changes
#: (:data:`pipelines.transform.BACKFILLED_COLUMNS`). It is part of the fingerprint a table records,
#: so raising it makes every table lag and the rescrub (:mod:`pipelines.rescrub`) fill the columns
#: in from silver itself, hot and cold tier. 2: the asset flag and the IP's country.
DERIVATIONS_VERSION = "2"


def _fingerprint(text: str) -> str:
    """The fingerprint of the rules ``text`` and :data:`DERIVATIONS_VERSION` (16 hex digits)."""
    return hashlib.sha256(f"{text}\0derivations={DERIVATIONS_VERSION}".encode()).hexdigest()[:16]


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
