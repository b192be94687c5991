"""Dagster resources: the lake (Delta tables) and the warehouse (gold DuckDB file)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from warehouse import gold
from warehouse.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """The Delta lake root (local path or object-store URI)."""

    root: str

    def lake(self) -> Lake:
        """A :class:`warehouse.lake.Lake` over this root."""
        return Lake(self.root)


class WarehouseResource(dg.ConfigurableResource):
    """The gold DuckDB file (single writer: runs are serialized) and its serving snapshot path."""

    path: str
    serving_path: str

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file for writing (gold tables created if missing); waits out other lock holders."""
        return gold.connect(Path(self.path))
