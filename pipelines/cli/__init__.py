"""The command-line tools (console scripts in ``pyproject.toml``): ``eventlake-replay`` (post sample
files to the ingest API), ``eventlake-status`` (how far served gold has caught up with bronze),
``eventlake-sources`` (write keys) and ``eventlake-types`` (the property type registry). Each reads the
settings once, at its start, and passes them down."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from warehouse.settings import Settings


def read_settings(prog: str) -> Settings:
    """The settings from the ``EVENTLAKE_*`` environment, read once at a CLI's start.

    Raises:
        SystemExit: (code 2) a setting is invalid; its message, naming the setting, is on stderr.
    """
    try:
        return Settings()
    except ValidationError as error:
        sys.stderr.write(f"{prog}: invalid settings: {error}\n")
        raise SystemExit(2) from None
