"""``eventlake-sources``: create a source and print its write key, or list the sources."""

from __future__ import annotations

import argparse
import sys

from warehouse.settings import read_settings
from warehouse.sources import add_source, read_sources_file


def main(argv: list[str] | None = None) -> int:
    """CLI: ``eventlake-sources add NAME [--rate-limit 5000/second]`` or ``eventlake-sources list``."""
    parser = argparse.ArgumentParser(prog="eventlake-sources", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a source and print its write key (shown once)")
    add.add_argument("name")
    add.add_argument("--rate-limit", default=None, help="e.g. 5000/second (default: EVENTLAKE_RATE_LIMIT)")
    commands.add_parser("list", help="list source names")
    args = parser.parse_args(argv)
    settings = read_settings("eventlake-sources")
    if args.command == "add":
        sys.stdout.write(add_source(settings.sources_path, args.name, args.rate_limit) + "\n")
    else:
        for source in read_sources_file(settings.sources_path) + list(settings.sources):
            sys.stdout.write(f"{source.name}\t{source.rate_limit or settings.rate_limit}\n")
    return 0
