"""``eventlake-types``: the property type registry — list the accepted JSON types per (app, event type,
property), or accept another one (then replay the quarantine, ``replay_quarantine`` job)."""

from __future__ import annotations

import argparse
import sys

from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from pipelines.registry import JSON_TYPES, accept, known_types
from warehouse.lake.store import Lake
from warehouse.settings import read_settings


@quiet_on_closed_pipe
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
    settings = read_settings("eventlake-types")
    store = Lake(settings.lake_root, storage_options=settings.storage_options)
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
