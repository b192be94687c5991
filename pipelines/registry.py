"""The property type registry (``lake/_state/property_types``), read and written by silver and by the
``eventlake-types`` CLI (:mod:`pipelines.cli.types`).

One row per accepted JSON type of a top-level property of an (app, event type). The silver step
registers the first type it sees in *valid* rows; an operator accepts another type on purpose with
``eventlake-types accept`` and then replays the quarantine (``replay_quarantine`` job). Rows are
never deleted by the pipeline, so rows already in silver stay valid on reprocessing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from pipelines.consistency import registry_rows
from pipelines.decoding import escape_key
from warehouse.lake.store import Lake
from warehouse.lake.tables import PROPERTY_TYPES

JSON_TYPES = ("string", "number", "boolean", "array", "object")


def known_types(store: Lake) -> pl.DataFrame:
    """The registry: ``(app, event_type, property, json_type)`` rows, several per property possible."""
    frame = pl.from_arrow(
        store.dataset(PROPERTY_TYPES).to_table(columns=["app", "event_type", "property", "json_type"])
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def register(store: Lake, new: pl.DataFrame, run_id: str) -> int:
    """Append first-seen types (``type_conflicts``' second result); returns how many."""
    if new.height:
        store.append(PROPERTY_TYPES, registry_rows(new, run_id, datetime.now(UTC)))
    return new.height


def accept(store: Lake, app: str, event_type: str, prop: str, json_type: str) -> bool:
    """Accept ``json_type`` for a property (idempotent); returns ``False`` if it already was.

    ``prop`` is the property name as clients send it (escaped here as the registry stores it).

    Raises:
        ValueError: ``json_type`` is not a JSON type name, or a name is empty.
    """
    if json_type not in JSON_TYPES:
        raise ValueError(f"json_type must be one of {', '.join(JSON_TYPES)}, not {json_type!r}")
    if not (app and event_type and prop):
        raise ValueError("app, event_type and property must not be empty")
    row = {"app": app, "event_type": event_type, "property": escape_key(prop), "json_type": json_type}
    if known_types(store).filter(**row).height:
        return False
    now = datetime.now(UTC)
    new = pl.DataFrame([{**row, "first_seen_at": now, "bronze_version": -1}])
    register(store, new, "eventlake-types accept")
    return True
