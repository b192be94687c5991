"""What a mart's SQL reads besides silver, resolved when it refreshes (``inputs:`` in its ``mart.yaml``).

Most marts need nothing; the named providers below read a definitions file, a setting or a silver
table. Their ``definition`` fingerprint is kept with the mart's watermark: when it changes, the
mart's whole history is recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pyarrow as pa

from warehouse.funnels import DEFAULT_FUNNELS_PATH, definition_tables, fingerprint, load_funnels
from warehouse.gold import GoldOptions
from warehouse.lake.store import Lake
from warehouse.lake.tables import USER_ATTRIBUTES
from warehouse.marts import Mart


@dataclass(frozen=True)
class MartInputs:
    """What a mart's SQL needs beyond silver.

    ``tables``: Arrow tables registered under their names (e.g. funnel definitions);
    ``lookback_days``: a changed day D also refreshes D - lookback_days .. D (their values read
    events up to that many days later); ``definition``: the fingerprint kept with the watermark;
    ``params``: extra bound parameters of its insert SQL (e.g. the session timeout);
    ``event_types``: the only event types its values depend on (None: all), so changes of other
    types skip the mart.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    lookback_days: int = 0
    definition: str = ""
    params: dict[str, object] = field(default_factory=dict)
    event_types: frozenset[str] | None = None


def user_attribute_inputs(lake: Lake, options: GoldOptions) -> MartInputs:
    """The user attributes (silver ``user_attributes``) as the ``user_attributes`` table; their
    content's SHA-256 is the definition, so an edited users source recomputes the mart (which
    version was valid when can change for any past day)."""
    names = [name for name in USER_ATTRIBUTES.schema.names if name != "run_id"]
    order = [(name, "ascending") for name in names]
    schema = pa.schema([USER_ATTRIBUTES.schema.field(name) for name in names])
    table = lake.dataset(USER_ATTRIBUTES).to_table(columns=names).cast(schema).sort_by(order)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return MartInputs(
        tables={"user_attributes": table},
        definition=f"user_attributes_sha256={hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()}",
    )


def funnel_inputs(lake: Lake, options: GoldOptions) -> MartInputs:
    """The funnel definitions (``options.funnels_path``, default ``warehouse/funnels.yaml``).

    Raises:
        OSError, ValueError: the funnels file cannot be read or is malformed.
    """
    funnels = load_funnels(options.funnels_path or DEFAULT_FUNNELS_PATH)
    return MartInputs(
        tables=definition_tables(funnels),
        lookback_days=funnels.lookback_days,
        definition=fingerprint(funnels),
        event_types=frozenset(
            event_type for funnel in funnels.funnels for step in funnel.steps for event_type in step.event_types
        ),
    )


def session_inputs(lake: Lake, options: GoldOptions) -> MartInputs:
    """Sessions: the inactivity timeout as ``$timeout_s`` (seconds); a changed day also refreshes the
    day before (a session crossing midnight), and a new timeout recomputes every session."""
    timeout_s = options.session_timeout_minutes * 60
    return MartInputs(lookback_days=1, definition=f"session_timeout_s={timeout_s}", params={"timeout_s": timeout_s})


def session_day_inputs(lake: Lake, options: GoldOptions) -> MartInputs:
    """Marts read from ``sessions``: its days and definition, without the timeout parameter."""
    return replace(session_inputs(lake, options), params={})


PROVIDERS: dict[str, Callable[[Lake, GoldOptions], MartInputs]] = {
    "funnels": funnel_inputs,
    "sessions": session_inputs,
    "session_days": session_day_inputs,
    "user_attributes": user_attribute_inputs,
}


def mart_inputs(mart: Mart, lake: Lake, options: GoldOptions) -> MartInputs:
    """The inputs of ``mart``: its provider's (if any) with its ``mart.yaml`` refresh values added —
    the larger lookback, the YAML ``definition`` after the provider's (both change the fingerprint),
    the insert model's ``params``, the YAML ``event_types`` when set."""
    spec = mart.spec
    inputs = PROVIDERS[spec.inputs](lake, options) if spec.inputs else MartInputs()
    return replace(
        inputs,
        lookback_days=max(inputs.lookback_days, spec.refresh.lookback_days),
        definition="|".join(part for part in (inputs.definition, spec.refresh.definition) if part),
        params={**inputs.params, **(spec.insert.params if spec.insert else {})},
        event_types=frozenset(spec.refresh.event_types) if spec.refresh.event_types else inputs.event_types,
    )
