"""The one typed settings object of every eventlake process (env prefix ``EVENTLAKE_``)."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
from limits import parse_many
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from warehouse.gold import GoldOptions
from warehouse.lake.maintenance import AutoCompactor
from warehouse.lake.object_store import s3_storage_options
from warehouse.lake.store import Lake
from warehouse.lake.tiers import TierPolicy, check_roots, tiered_lake


class SourceConfig(BaseModel):
    """One source: its name (recorded on every row it sends) and its write key's SHA-256 (hex).

    ``rate_limit`` overrides :attr:`Settings.rate_limit` for this source (limits notation,
    https://limits.readthedocs.io/en/stable/quickstart.html#rate-limit-string-notation).
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    write_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rate_limit: str | None = None

    @field_validator("rate_limit")
    @classmethod
    def _one_limit(cls, value: str | None) -> str | None:
        return None if value is None else check_rate_limit(value)


def check_rate_limit(value: str) -> str:
    """``value`` when it is one rate limit in limits' notation (e.g. ``5000/second``) of at least one
    event per window of at least one unit.

    Raises:
        ValueError: anything else (limits' parser reads only the first of several limits, and reads
            a window of 0 as 1, so both are refused here rather than silently changed).
    """
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1 or not re.fullmatch(r"\s*\d+\s*(/|per)\s*([1-9]\d*\s*)?[a-z]+\s*", value):
        raise ValueError(f"{value!r} is not one rate limit such as '5000/second' or '100 per 10 minutes'")
    return value


@functools.cache
def _duckdb_time_zones() -> frozenset[str]:
    """Time zone names DuckDB's ICU knows. A private connection: DuckDB's module-level default
    connection is shared by every thread, and a second thread using it at the same time made
    ``fetchall()`` return no rows (settings built in two threads failed with IndexError)."""
    with duckdb.connect() as con:
        return frozenset(name for (name,) in con.execute("select name from pg_timezone_names()").fetchall())


class Settings(BaseSettings):
    """Configuration read from ``EVENTLAKE_*`` environment variables, with local defaults.

    Everything the running system writes lives under ``data_dir`` unless a root is
    given explicitly, so ``rm -rf data`` resets a local install.

    Example: ``EVENTLAKE_DATA_DIR=/srv/eventlake EVENTLAKE_FLUSH_INTERVAL_MS=100``.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTLAKE_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Root of everything written locally.")
    lake_uri: str | None = Field(
        default=None,
        description="Hot lake root (local path or any object-store URI delta-rs supports); default <data_dir>/lake.",
    )
    cold_uri: str | None = Field(
        default=None,
        description="Cold lake root, where silver's old partitions move (cheaper storage: a local path or any "
        "object-store URI delta-rs supports); default <data_dir>/cold.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="Object storage: the S3 endpoint URL of s3:// lake roots (e.g. http://127.0.0.1:7480 for a "
        "local Ceph RGW); unset: AWS's own.",
    )
    s3_access_key_id: str | None = Field(default=None, description="Object storage: the S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="Object storage: the S3 secret key.")
    s3_region: str = Field(default="us-east-1", description="Object storage: the S3 region.")
    s3_allow_http: bool = Field(default=False, description="Object storage: allow a plain-HTTP endpoint.")
    warehouse_path: Path | None = Field(
        default=None, description="DuckDB file holding the gold marts; default <data_dir>/warehouse.duckdb."
    )
    serving_path: Path | None = Field(
        default=None,
        description="Read-only DuckDB snapshot dashboards query; default <data_dir>/serving/serving.duckdb.",
    )

    # ingest API
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    flush_interval_ms: int = Field(
        default=50,
        ge=1,
        description="Group commit: least time between the starts of two bronze commits of one ingest node "
        "(ms), so at most 1000/interval commits a second per node whatever the load and its workers; a "
        "lone request is committed at once, under load a request waits up to about this long.",
    )
    max_body_bytes: int = Field(
        default=512_000,
        ge=1024,
        description="Largest request body in bytes, after gzip inflation, before 413 (Segment's 500 KB per request).",
    )
    body_timeout_s: float = Field(
        default=30, gt=0, description="Longest time a request body may take to arrive before 408 (slow uploads)."
    )
    max_events_per_request: int = Field(
        default=20_000,
        ge=1,
        description="Most events one request may carry after expansion (a native payload holds up to 100); "
        "more is 413 before any row is built.",
    )
    max_event_bytes: int = Field(
        default=32_768,
        ge=256,
        description="Largest single event (its stored JSON) in bytes; larger events are rejected by index, "
        "a request holding only such events gets 413 (Segment's 32 KB per event).",
    )
    cors_origins: list[str] = Field(
        default=["*"],
        description="Origins browsers may POST from (CORS); JSON list, e.g. '[\"https://shop.example\"]'.",
    )
    max_payloads_per_request: int = Field(
        default=10_000, ge=1, description="Most payloads in one request's array before 413."
    )
    max_expanded_bytes: int = Field(
        default=8_388_608,
        ge=1024,
        description="Most bytes of event rows one request may expand to (each event repeats its payload's "
        "fields); payloads past it are rejected by index.",
    )

    ingest_workers: int = Field(
        default=2, ge=1, description="uvicorn worker processes `make up` starts (supervised: a dead one is replaced)."
    )
    pipeline_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU niceness `make up` gives Dagster's daemon and so every run it launches (the hot path, "
        "replays, maintenance): on a machine they share with the ingest API, the API's acknowledgements "
        "come first (0: the same priority).",
    )
    max_buffer_events: int = Field(
        default=200_000,
        ge=1,
        description="Back-pressure: most events buffered or being committed per worker; past it requests get 503.",
    )
    max_buffer_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Back-pressure: most bytes of event JSON buffered or being committed per worker.",
    )

    # sources and write keys (warehouse.sources)
    sources_file: Path | None = Field(
        default=None,
        description="JSON file of sources and their hashed write keys; default <data_dir>/sources.json.",
    )
    sources: list[SourceConfig] = Field(
        default=[],
        description="More sources from the environment, JSON list like the file's "
        '(e.g. \'[{"name": "web", "write_key_sha256": "…"}]\').',
    )
    rate_limit: str = Field(
        default="20000/second",
        description="Default per-source rate limit in events (limits notation, e.g. '5000/second'): for all "
        "nodes together with EVENTLAKE_REDIS_URL, else per worker process.",
    )
    dagster_postgres_url: SecretStr | None = Field(
        default=None,
        description="Dagster's run, event-log and schedule storage in Postgres (e.g. "
        "postgresql+psycopg2://dagster:secret@10.0.0.6:5432/dagster), as a cluster's Dagster hosts share it; unset: "
        "SQLite files under <data_dir>/dagster. The stack's dagster.yaml reads it from the environment.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by the ingest nodes (e.g. redis://127.0.0.1:6379/0): per-source rate limits "
        "counted for all nodes together, and sources added or revoked on one reach all; unset: per process.",
    )
    sources_refresh_ms: int = Field(
        default=1000,
        ge=50,
        description="How often (ms) a worker looks for sources revoked since it read them (the sources file, or "
        "Redis); a new write key works at its first use.",
    )
    snowplow_pixel_apps: dict[str, str] = Field(
        default={},
        description="Snowplow's GET /i pixel carries no write key: the app ids (`aid`) it accepts and the source "
        'each is recorded as, JSON (e.g. \'{"shop": "web"}\'); an app id not listed is 403.',
    )
    snowplow_pixel_rate_limit: str = Field(
        default="600/minute",
        description="Requests one client IP may send to the keyless pixel per window, per worker (limits notation).",
    )

    # pipelines: scrubbing
    scrub_rules_path: Path | None = Field(
        default=None, description="Scrub rules YAML; default pipelines/scrub_rules.yaml in the repository."
    )

    # pipelines: silver step
    silver_workers: int = Field(
        default=0,
        ge=0,
        description="Processes for silver's per-row stages (decode, property scrub); 0 = one per CPU core (the cap).",
    )
    silver_parallel_min_rows: int = Field(
        default=50_000,
        ge=1,
        description="Smallest bronze batch (rows) for which silver starts worker processes (or goes to Ray).",
    )
    ray_address: str | None = Field(
        default=None,
        description="host:port of a Ray cluster's head (GCS): silver's per-row stages of batches of at least "
        "EVENTLAKE_SILVER_PARALLEL_MIN_ROWS rows run there, on Daft; unset: on this host (docs/scale.md).",
    )
    silver_max_batch_rows: int = Field(
        default=250_000,
        ge=1,
        description="Most bronze rows one silver micro-batch takes (whole commits, at least one): a backlog, "
        "e.g. after the pipeline was down, is worked off over several runs instead of one that may not fit "
        "in memory (about 5 KB of peak memory per row).",
    )

    validation_part_rows: int = Field(
        default=500_000,
        ge=1,
        description="A gold mart's invariants are checked in parts of whole days of at most this many rows "
        "(a day with more is one part): memory follows the part, not a first build's whole rewrite.",
    )

    # gold: the DuckDB warehouse
    warehouse_memory_limit: str = Field(
        default="40%",
        description="DuckDB memory_limit of the warehouse (e.g. '40%' of RAM or '4GB'); past it DuckDB spills "
        "to disk. The rest is left to the Arrow reads of the lake and to Python.",
    )
    gold_batch_weeks: int = Field(
        default=4,
        ge=1,
        description="A mart refresh rewrites its days in batches of this many ISO weeks (Monday-aligned), so "
        "a first build or a large backfill reads one batch's events at a time and memory stays bounded.",
    )

    # gold: reporting days, funnels and sessions
    reporting_timezone: str = Field(
        default="UTC",
        description="IANA time zone whose calendar days the gold marts count in (e.g. 'Europe/Berlin'); "
        "DST-correct. Changing it recomputes every mart.",
    )
    funnels_path: Path | None = Field(
        default=None, description="Funnel definitions YAML; default warehouse/funnels.yaml in the repository."
    )
    extra_marts_dir: Path | None = Field(
        default=None,
        description="A folder of more gold mart folders (warehouse/marts/README.md) besides the shipped ones; "
        "each becomes an asset with its check, table and serving views.",
    )
    users_path: Path | None = Field(
        default=None,
        description="Users source: a CSV file or Delta table of user attributes with optional valid_from "
        "(a slowly changing dimension, see warehouse/users.py); none: no user attributes.",
    )
    session_timeout_minutes: int = Field(
        default=30,
        ge=1,
        le=720,
        description="Inactivity (minutes) that ends a session of events without a client session id.",
    )

    # pipelines: data quality
    quarantine_warn_rate: float = Field(
        default=0.05, ge=0, le=1, description="Quarantined share of a batch above which its check warns."
    )
    quarantine_error_rate: float = Field(
        default=0.25, ge=0, le=1, description="Quarantined share of a batch above which its check is an error."
    )
    freshness_warn_s: int = Field(
        default=3600,
        gt=0,
        description="Silver, gold and serving warn as stale after this long without an update (s).",
    )
    freshness_fail_s: int = Field(
        default=86400,
        gt=0,
        description="Silver, gold and serving fail freshness after this long without an update (s).",
    )

    # pipelines: pseudonymization (HMAC-SHA256, RFC 2104)
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for pseudonyms; default: generated once into <data_dir>/pseudonym_key (mode 0600).",
    )
    pseudonymize_all_ids: bool = Field(
        default=False,
        description="Replace every user_id and anonymous_id by its pseudonym (email-like ids always are).",
    )

    # orchestration
    dagster_port: int = Field(default=3000, description="Dagster UI port on 127.0.0.1 under `make up`.")

    # dashboards
    superset: bool = Field(default=True, description="Start and provision Superset with `make up` (0 to skip).")
    superset_port: int = 8088

    # pipelines
    sensor_interval_s: int = Field(default=2, ge=1, le=5, description="Bronze sensor tick (s).")
    hot_path_poll_s: float = Field(
        default=0.25, gt=0, le=10, description="Hot path: pause between bronze checks while idle (s)."
    )
    hot_path_idle_s: float = Field(
        default=0,
        ge=0,
        description="Hot path: end the long-lived run after bronze stayed idle this long (s); 0: keep it "
        "running (a commit starts a micro-batch within the poll interval).",
    )
    hot_path_max_s: float = Field(
        default=3600,
        gt=0,
        description="Hot path: end the long-lived run after this long; the sensor starts the next (s).",
    )
    gold_timeout_s: float = Field(
        default=900, gt=0, description="How long `make up` waits for gold to cover the replayed bronze (s)."
    )

    # lake maintenance (docs/lifecycle.md)
    maintenance_cron: str = Field(
        default="*/30 * * * *", description="When the maintain_lake job runs (cron, UTC); its own code location."
    )
    maintenance_retention_h: float = Field(
        default=1,
        ge=0.05,
        description="Vacuum: a data file no version from the slowest consumer's on reads is deleted once it was "
        "written this long before that version (h); longer than any append takes from writing its files to "
        "its commit (at least 0.05 h = 3 min; rewrites hold the table's rewrite lock, which the vacuum takes too).",
    )
    log_retention_minutes: float = Field(
        default=0.5,
        ge=0,
        description="Log entries every consumer has read are kept this long (min), for time travel and for a "
        "compaction still checking its commit against them; 0: only back to the last checkpoint before the "
        "slowest consumer. Each commit lists the whole log on a local "
        "disk: a long log slows every write.",
    )
    run_retention_days: float = Field(
        default=2,
        gt=0,
        description="Finished Dagster runs (a micro-batch each: ~17,000 a day) are deleted with their logs after "
        "this long (days).",
    )
    compact_target_mb: int = Field(default=128, ge=1, description="Size of the files compaction writes (MB).")
    auto_compact_files: int = Field(
        default=100,
        ge=0,
        description="Auto compaction: a partition a writer appends to is compacted (in the background) once it "
        "holds this many files smaller than EVENTLAKE_AUTO_COMPACT_MB; 0: off.",
    )
    auto_compact_mb: int = Field(default=16, ge=1, description="Size of the files auto compaction writes (MB).")
    silver_open_days: int = Field(
        default=2,
        ge=0,
        description="Silver partitions (event days, UTC) younger than this stay open for late events: not compacted.",
    )

    # tiers and retention (docs/lifecycle.md, "Tiers and retention")
    silver_hot_days: int = Field(
        default=90, ge=1, description="Silver's event days older than this (UTC days) move to the cold root."
    )
    silver_cold_days: int = Field(
        default=730, ge=0, description="Silver's event days older than this are deleted from the cold root (0: never)."
    )
    bronze_ttl_days: int = Field(
        default=14,
        ge=0,
        description="Bronze's received days older than this are deleted once silver and data quality read them "
        "(0: never).",
    )
    quarantine_ttl_days: int = Field(
        default=90,
        ge=0,
        description="The quarantine's received days older than this are deleted once data quality read them "
        "(0: never).",
    )
    tiering_cron: str = Field(
        default="15 * * * *",
        description="When the tier_lake job moves and expires partitions (cron, UTC); it runs in the pipeline's "
        "code location, between micro-batches.",
    )
    cold_compression_level: int = Field(
        default=9,
        ge=1,
        le=22,
        description="zstd level of the files written to the cold root (hot: delta-rs's default).",
    )
    cold_target_mb: int = Field(default=512, ge=1, description="Size of the files written to the cold root (MB).")

    @field_validator("rate_limit", "snowplow_pixel_rate_limit")
    @classmethod
    def _one_limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ValueError("EVENTLAKE_REDIS_URL must be a redis:// or rediss:// URL")  # never echo it: a password
        return value

    @field_validator("ray_address")
    @classmethod
    def _ray_host_port(cls, value: str | None) -> str | None:
        host, _, port = (value or "").rpartition(":")
        valid_port = port.isdigit() and 0 < int(port) < 65536
        if value is not None and (not host or "/" in value or host.startswith("[") or not valid_port):
            raise ValueError(
                "EVENTLAKE_RAY_ADDRESS must be host:port of the Ray head's GCS (e.g. 10.0.0.7:6380; "
                "an IPv4 address or a host name, not a ray:// client address)"
            )
        return value

    @field_validator("dagster_postgres_url")
    @classmethod
    def _postgres_driver(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("postgresql+psycopg2://"):
            raise ValueError(
                "EVENTLAKE_DAGSTER_POSTGRES_URL must start with postgresql+psycopg2:// (the driver dagster-postgres "
                "installs; SQLAlchemy reads a bare postgresql:// as psycopg 3, which is not installed)"
            )
        return value

    @model_validator(mode="after")
    def _s3_endpoint_usable(self) -> Settings:
        """An S3 endpoint is a URL with its scheme, and a plain-HTTP one is allowed explicitly."""
        endpoint = self.s3_endpoint
        if endpoint is not None:
            if not endpoint.startswith(("http://", "https://")):
                raise ValueError(f"EVENTLAKE_S3_ENDPOINT {endpoint!r} needs its scheme: http://… or https://…")
            if endpoint.startswith("http://") and not self.s3_allow_http:
                raise ValueError(
                    f"EVENTLAKE_S3_ENDPOINT {endpoint!r} is plain HTTP: set EVENTLAKE_S3_ALLOW_HTTP=true to use it"
                )
        return self

    @model_validator(mode="after")
    def _tier_policy_holds(self) -> Settings:
        """The tier horizons make sense together (:class:`warehouse.lake.tiers.TierPolicy`) and the
        tiers' roots do not overlap (:func:`warehouse.lake.tiers.check_roots`)."""
        self.tier_policy()
        check_roots(self.lake_root, self.cold_root)
        return self

    @field_validator("reporting_timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        """Only IANA names the tz database knows (``zoneinfo``), e.g. ``America/New_York``."""
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {name!r} (e.g. 'UTC', 'Europe/Berlin')") from exc
        # zoneinfo also reads file names DuckDB's ICU does not know (posixrules, right/UTC…).
        if name not in _duckdb_time_zones():
            raise ValueError(f"time zone {name!r} is not one DuckDB knows (use an IANA name such as 'Europe/Berlin')")
        return name

    @property
    def lake_root(self) -> str:
        """The hot lake root as a URI or absolute path string."""
        if self.lake_uri:
            return self.lake_uri.rstrip("/")
        return str((self.data_dir / "lake").resolve())

    @property
    def cold_root(self) -> str:
        """The cold lake root as a URI or absolute path string."""
        if self.cold_uri:
            return self.cold_uri.rstrip("/")
        return str((self.data_dir / "cold").resolve())

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The object-storage configuration as delta-rs's storage options (``AWS_*``), which
        :func:`warehouse.lake.object_store.filesystem` also turns into pyarrow's filesystem; ``None`` when
        no ``EVENTLAKE_S3_*`` setting is given (local roots, or the environment's own AWS settings)."""
        return s3_storage_options(
            self.s3_endpoint,
            self.s3_access_key_id,
            self.s3_secret_access_key.get_secret_value() if self.s3_secret_access_key else None,
            self.s3_region,
            self.s3_allow_http,
        )

    def tier_policy(self) -> TierPolicy:
        """How long data stays in each tier (:class:`warehouse.lake.tiers.TierPolicy`)."""
        return TierPolicy(self.silver_hot_days, self.silver_cold_days, self.bronze_ttl_days, self.quarantine_ttl_days)

    def lake(self, compactor: AutoCompactor | None = None) -> Lake:
        """The hot lake with its cold tier (:func:`warehouse.lake.tiers.tiered_lake`)."""
        return tiered_lake(
            self.lake_root,
            self.cold_root,
            self.cold_compression_level,
            self.cold_target_mb,
            compactor,
            self.storage_options,
        )

    @property
    def serving_file(self) -> Path:
        """Absolute path of the published serving snapshot."""
        return (self.serving_path or self.data_dir / "serving" / "serving.duckdb").resolve()

    @property
    def sources_path(self) -> Path:
        """Absolute path of the sources file (hashed write keys)."""
        return (self.sources_file or self.data_dir / "sources.json").resolve()

    @property
    def local_key_path(self) -> Path:
        """Where the generated local source's write key is kept for local tools (replay, `make up`)."""
        return (self.data_dir / "local_write_key").resolve()

    @property
    def pseudonym_key_path(self) -> Path:
        """Where the generated pseudonym key is kept when ``pseudonym_key`` is not set."""
        return (self.data_dir / "pseudonym_key").resolve()

    @property
    def warehouse_file(self) -> Path:
        """Absolute path of the gold DuckDB file."""
        return (self.warehouse_path or self.data_dir / "warehouse.duckdb").resolve()

    def gold_options(self) -> GoldOptions:
        """How the gold refreshes compute gold (:class:`warehouse.gold.GoldOptions`)."""
        return GoldOptions(
            reporting_timezone=self.reporting_timezone,
            batch_weeks=self.gold_batch_weeks,
            session_timeout_minutes=self.session_timeout_minutes,
            funnels_path=self.funnels_path,
            validation_part_rows=self.validation_part_rows,
            extra_marts_dir=self.extra_marts_dir,
        )


#: The object-storage settings ``make up LAKE=s3`` writes under the data folder while its stack runs
#: (scripts/stack.py): :func:`read_settings` reads them when no lake URI is set, so the CLIs in
#: another shell see the lake the stack uses.
STACK_S3_ENV = "s3/eventlake.env"


def read_settings(prog: str) -> Settings:
    """The settings from the ``EVENTLAKE_*`` environment, read once where a process starts (a CLI, an
    API worker); with no ``EVENTLAKE_LAKE_URI`` while a ``make up LAKE=s3`` stack runs on this data
    folder, its object-storage settings too (:data:`STACK_S3_ENV`; the environment wins).

    Raises:
        SystemExit: (code 2) a setting is invalid; the message, naming it, is on stderr.
    """
    try:
        settings = Settings()
        stack_s3 = settings.data_dir / STACK_S3_ENV
        if settings.lake_uri is None and stack_s3.exists():  # `make up LAKE=s3` runs: its lake is on S3
            return Settings(_env_file=stack_s3)  # type: ignore[call-arg]
        return settings
    except ValidationError as error:
        # Without the values given: one may hold a password (a Redis or Postgres URL, a key).
        problems = [
            (f"EVENTLAKE_{'_'.join(str(part) for part in problem['loc']).upper()}: " if problem["loc"] else "")
            + problem["msg"]
            for problem in error.errors(include_input=False, include_url=False)
        ]
        sys.stderr.write(f"{prog}: invalid settings: {'; '.join(problems)}\n")
        raise SystemExit(2) from None
