"""The command-line tools (console scripts in ``pyproject.toml``): ``eventlake-replay`` (post sample
files to the ingest API), ``eventlake-status`` (how far served gold has caught up with bronze),
``eventlake-sources`` (write keys), ``eventlake-types`` (the property type registry),
``eventlake-query`` (SQL over the lake) and ``eventlake-erase`` (erase a person). Each reads the
settings once, at its start, and passes them down; each ``main`` is wrapped by
:func:`pipelines.cli.closed_pipe.quiet_on_closed_pipe`, so a reader that stops early (``| head``)
ends it quietly."""
