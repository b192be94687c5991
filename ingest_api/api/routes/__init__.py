"""One module per route group: ``events`` (ingest), ``health``."""
