"""The command-line tools (console scripts in ``pyproject.toml``): ``eventlake-replay`` (post sample
files to the ingest API), ``eventlake-status`` (how far served gold has caught up with bronze),
``eventlake-sources`` (write keys) and ``eventlake-types`` (the property type registry). Each reads the
settings once, at its start, and passes them down."""
