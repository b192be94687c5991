"""The property type registry (``lake/_state/property_types``) and its ``eventlake-types`` CLI.

One row per accepted JSON type of a top-level property of an (app, event type). The silver step
registers the first type it sees in *valid* rows; an operator accepts another type on purpose with
``eventlake-types accept`` and then replays the quarantine (``replay_quarantine`` job). Rows are
never deleted by the pipeline, so rows already in silver stay valid on reprocessing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import polars as pl

from pipelines.consistency import registry_rows
from pipelines.decoding import escape_key
from warehouse.lake.store import Lake
from warehouse.lake.tables import PROPERTY_TYPES
from warehouse.settings import Settings

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


def main(argv: list[str] | None = None) -> int:
    """``eventlake-types list`` | ``eventlake-types accept APP EVENT_TYPE PROPERTY JSON_TYPE``."""
    parser = argparse.ArgumentParser(prog="eventlake-types", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the accepted types per (app, event type, property)")
    accepting = commands.add_parser("accept", help="accept another JSON type for a property, then replay")
    for name in ("app", "event_type", "property"):
        accepting.add_argument(name)
    accepting.add_argument("json_type", choices=JSON_TYPES)
    args = parser.parse_args(argv)
    store = Lake(Settings().lake_root)
    if args.command == "list":  # tab-separated; names shown as stored (% escapes)
        for row in known_types(store).sort("app", "event_type", "property", "json_type").iter_rows():
            sys.stdout.write("\t".join(row) + "\n")
        return 0
    try:
        added = accept(store, args.app, args.event_type, args.property, args.json_type)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(
        ("accepted" if added else "already accepted")
        + f": {args.app}/{args.event_type}.{args.property} as {args.json_type}; "
        "run the replay_quarantine job to move the rows it held back\n"
    )
    return 0
