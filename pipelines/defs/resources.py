"""Dagster resources: the lake, the gold warehouse and the silver step's rules, filled from the
process's settings once (:func:`pipelines.defs.build_definitions`), so each run shows its
configuration in the UI and tests pass resources instead of changing the environment."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from pydantic import Field

from pipelines import silver
from pipelines.parallel import Parallelism
from pipelines.pseudonyms import Pseudonymizer, silver_pseudonymizer
from pipelines.scrub_rules import DEFAULT_RULES_PATH
from pipelines.validation import load_suite, suite_path
from warehouse import gold
from warehouse.lake.maintenance import auto_compactor
from warehouse.lake.object_store import s3_storage_options
from warehouse.lake.store import Lake
from warehouse.lake.tables import EVENTS, RAW_EVENTS
from warehouse.lake.tiers import tiered_lake
from warehouse.settings import Settings


class LakeResource(dg.ConfigurableResource):
    """The Delta lake's hot and cold roots (local paths or object-store URIs), how the cold one is
    written, and the auto compaction of the partitions runs append to
    (:class:`warehouse.lake.maintenance.AutoCompaction`)."""

    root: str
    cold_root: str
    cold_compression_level: int = Field(default=9, ge=1, le=22, description="zstd level of the cold root's files.")
    cold_target_mb: int = Field(default=512, ge=1, description="Size of the files written to the cold root (MB).")
    auto_compact_files: int = Field(default=0, ge=0, description="Small files that trigger auto compaction; 0: off.")
    auto_compact_mb: int = Field(default=16, ge=1, description="Size of the files auto compaction writes (MB).")
    # The object store of s3:// roots (warehouse.lake.object_store); the secret comes from the environment.
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL; none: AWS's own.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: str | None = Field(default=None, description="S3 secret key.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_allow_http: bool = Field(default=False, description="Allow a plain-HTTP endpoint.")

    def lake(self) -> Lake:
        """A :class:`warehouse.lake.store.Lake` over the hot root, with its cold tier.

        Raises:
            warehouse.lake.object_store.UnsafeStoreError: a root's store ignores conditional writes.
        """
        compactor = auto_compactor(self.auto_compact_files, self.auto_compact_mb)
        options = s3_storage_options(
            self.s3_endpoint, self.s3_access_key_id, self.s3_secret_access_key, self.s3_region, self.s3_allow_http
        )
        return tiered_lake(
            self.root, self.cold_root, self.cold_compression_level, self.cold_target_mb, compactor, options
        )


#: GoldOptions fields that are paths.
_PATH_OPTIONS = frozenset({"funnels_path", "extra_marts_dir"})


class WarehouseResource(dg.ConfigurableResource):
    """The gold DuckDB file (single writer: runs are serialized), its serving snapshot and how gold is
    computed (:class:`warehouse.gold.GoldOptions`); built from the settings by :meth:`from_settings`."""

    path: str
    serving_path: str
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit, e.g. '40%' or '4GB'.")
    # warehouse.gold.GoldOptions, field by field (paths as text), so the launchpad shows each.
    reporting_timezone: str
    batch_weeks: int
    session_timeout_minutes: int
    funnels_path: str | None
    validation_part_rows: int
    extra_marts_dir: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> WarehouseResource:
        """The warehouse these settings describe."""
        options: dict[str, Any] = {
            name: str(value) if isinstance(value, Path) else value
            for name, value in asdict(settings.gold_options()).items()
        }
        return cls(
            path=str(settings.warehouse_file),
            serving_path=str(settings.serving_file),
            memory_limit=settings.warehouse_memory_limit,
            **options,
        )

    def options(self) -> gold.GoldOptions:
        """How the refreshes compute gold."""
        values: dict[str, Any] = {option.name: getattr(self, option.name) for option in fields(gold.GoldOptions)}
        typed: dict[str, Any] = {name: Path(v) if name in _PATH_OPTIONS and v else v for name, v in values.items()}
        return gold.GoldOptions(**typed)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file for writing (gold tables created if missing); waits out other lock holders."""
        return gold.connect(Path(self.path), memory_limit=self.memory_limit, marts=self.options().marts)


class SilverResource(dg.ConfigurableResource):
    """What the silver step applies and how it runs (settings ``EVENTLAKE_SCRUB_RULES_PATH``,
    ``_PSEUDONYM_KEY``, ``_SILVER_*``, ``_RAY_ADDRESS``, ``_QUARANTINE_*_RATE``, ``_USERS_PATH``)."""

    scrub_rules_path: str | None
    pseudonym_key: str | None = Field(default=None, description="HMAC key; from EVENTLAKE_PSEUDONYM_KEY (hidden).")
    pseudonym_key_path: str
    pseudonymize_all_ids: bool
    workers: int
    parallel_min_rows: int
    ray_address: str | None = None
    max_batch_rows: int
    quarantine_warn_rate: float
    quarantine_error_rate: float
    users_path: str | None

    @classmethod
    def from_settings(cls, settings: Settings, pseudonym_key: str | dg.EnvVar | None = None) -> SilverResource:
        """The silver step these settings describe; ``pseudonym_key`` (e.g. ``dg.EnvVar(...)``, which
        the UI does not show) replaces ``settings.pseudonym_key``."""
        secret = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
        return cls(
            scrub_rules_path=str(settings.scrub_rules_path) if settings.scrub_rules_path else None,
            pseudonym_key=pseudonym_key if pseudonym_key is not None else secret,
            pseudonym_key_path=str(settings.pseudonym_key_path),
            pseudonymize_all_ids=settings.pseudonymize_all_ids,
            workers=settings.silver_workers,
            parallel_min_rows=settings.silver_parallel_min_rows,
            ray_address=settings.ray_address,
            max_batch_rows=settings.silver_max_batch_rows,
            quarantine_warn_rate=settings.quarantine_warn_rate,
            quarantine_error_rate=settings.quarantine_error_rate,
            users_path=str(settings.users_path) if settings.users_path else None,
        )

    def rules_path(self) -> Path:
        """The scrub rules file in use."""
        return Path(self.scrub_rules_path) if self.scrub_rules_path else DEFAULT_RULES_PATH

    def pseudonymizer(self) -> Pseudonymizer:
        """Silver's pseudonymizer, with a scrubber of the current rules.

        Raises:
            OSError: the pseudonym key file cannot be read or created.
        """
        return silver_pseudonymizer(
            self.pseudonym_key, Path(self.pseudonym_key_path), self.rules_path(), self.pseudonymize_all_ids
        )

    def rules(self) -> silver.Rules:
        """Everything the silver step applies: the suites, scrub rules and pseudonymization."""
        pseudonymizer = self.pseudonymizer()
        return silver.Rules(
            load_suite(suite_path(RAW_EVENTS.name)),
            pseudonymizer.scrubber,
            pseudonymizer,
            load_suite(suite_path(EVENTS.name)),
            Parallelism(self.workers, self.parallel_min_rows, self.ray_address),
        )
