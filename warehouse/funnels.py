"""Funnel definitions: ordered steps, each matched by event types, and a conversion window.

Funnels are data, in ``warehouse/funnels.yaml`` (or ``EVENTLAKE_FUNNELS_PATH``)::

    funnels:
      - name: shop_checkout
        apps: [onlineshop_2019]        # optional: every app when left out
        conversion_window: 24h         # s, m, h or d; from entering step 1 to the last step
        steps:
          - name: catalog
            event_types: [catalog]
          - name: product
            event_types: [product1, product2]

The ``funnel_steps`` mart (``warehouse/marts/funnel_steps/insert.sql``) reads them as two tables,
:func:`definition_tables`. The definitions' :func:`fingerprint` is kept with the mart's
watermark: editing the file recomputes the mart's whole history on the next refresh.
"""

from __future__ import annotations

import hashlib
import math
import re
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

#: The shipped funnels: package data of ``warehouse`` (a file on disk in a regular install).
DEFAULT_FUNNELS_PATH = Path(str(files("warehouse").joinpath("funnels.yaml")))
#: Longest conversion window accepted: a changed day recomputes the funnels entered up to this
#: many days before it.
MAX_WINDOW_DAYS = 90
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = r"^[a-z][a-z0-9_]{0,63}$"


_STRICT = ConfigDict(frozen=True, extra="forbid")  # a misspelt key is an error, not a silent default
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class FunnelStep(BaseModel):
    """One step: any event whose ``event_type`` is in ``event_types``."""

    model_config = _STRICT
    name: str = Field(pattern=_NAME)
    event_types: tuple[NonEmpty, ...] = Field(min_length=1)


class Funnel(BaseModel):
    """An ordered funnel (PostHog's "sequential" funnel): step k+1 counts only at or after step k
    (strictly after when the two steps share an event type, so one event never counts twice), and
    within ``conversion_window_s`` seconds of entering step 1."""

    model_config = _STRICT
    name: str = Field(pattern=_NAME)
    apps: tuple[NonEmpty, ...] = ()
    conversion_window_s: int = Field(alias="conversion_window", gt=0, le=MAX_WINDOW_DAYS * 86400)
    steps: tuple[FunnelStep, ...] = Field(min_length=2)

    @field_validator("conversion_window_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> int:
        match = _DURATION.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"conversion_window {value!r}: expected a number and a unit (s, m, h, d), e.g. 24h")
        return int(match[1]) * _UNIT_SECONDS[match[2]]


class Funnels(BaseModel):
    """The funnels file: a ``funnels`` list (``funnels: []`` for none), names unique."""

    model_config = _STRICT
    funnels: tuple[Funnel, ...]

    @field_validator("funnels")
    @classmethod
    def _unique(cls, funnels: tuple[Funnel, ...]) -> tuple[Funnel, ...]:
        names = [f.name for f in funnels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"funnel names must be unique: {duplicates}")
        return funnels

    @property
    def lookback_days(self) -> int:
        """Whole days a funnel can span: a changed day D can complete funnels entered from D minus this."""
        return max((math.ceil(f.conversion_window_s / 86400) for f in self.funnels), default=0)


def load_funnels(path: Path = DEFAULT_FUNNELS_PATH) -> Funnels:
    """The funnels of ``path``, read afresh on every call (each refresh sees the file as it is).

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not YAML, or a funnel is malformed (unknown keys, names, fewer
            than two steps, a window without a unit…).
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Funnels.model_validate(document)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"invalid funnels in {path}: {exc}") from exc


def definition_tables(funnels: Funnels) -> dict[str, pa.Table]:
    """The definitions as the mart's SQL reads them.

    ``funnel_definitions``: ``(funnel, app, conversion_window_s, steps)``, one row per app a
    funnel is restricted to (``app`` null: every app). ``funnel_step_matchers``:
    ``(funnel, step, step_name, event_type)``, steps numbered from 1.
    """
    definitions = [
        {"funnel": f.name, "app": app, "conversion_window_s": f.conversion_window_s, "steps": len(f.steps)}
        for f in funnels.funnels
        for app in (f.apps or (None,))
    ]
    matchers = [
        {"funnel": f.name, "step": number, "step_name": step.name, "event_type": event_type}
        for f in funnels.funnels
        for number, step in enumerate(f.steps, start=1)
        for event_type in step.event_types
    ]
    return {
        "funnel_definitions": pa.Table.from_pylist(definitions, _DEFINITIONS_SCHEMA),
        "funnel_step_matchers": pa.Table.from_pylist(matchers, _MATCHERS_SCHEMA),
    }


_DEFINITIONS_SCHEMA = pa.schema(
    [("funnel", pa.string()), ("app", pa.string()), ("conversion_window_s", pa.int64()), ("steps", pa.int32())]
)
_MATCHERS_SCHEMA = pa.schema(
    [("funnel", pa.string()), ("step", pa.int32()), ("step_name", pa.string()), ("event_type", pa.string())]
)


def fingerprint(funnels: Funnels) -> str:
    """SHA-256 of the definitions (canonical JSON): changes whenever a funnel does."""
    return hashlib.sha256(funnels.model_dump_json(by_alias=True).encode()).hexdigest()
