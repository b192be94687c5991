"""The ``users`` source: user attributes as a slowly changing dimension (SCD type 2).

An operator points ``EVENTLAKE_USERS_PATH`` at a CSV file (``.csv`` or ``.csv.gz``) or a Delta
table, e.g. a nightly export of the CRM or the product database. Columns:

* ``user_id`` (required): the id clients send as ``user`` / ``userId``;
* ``app`` (optional): the app a row belongs to; without the column every row applies to every app;
* ``valid_from`` (optional): when the row's attributes became true, RFC 3339 / ISO 8601 (a date is
  its UTC midnight, a time without offset is UTC); without the column (or empty) since always;
* every other column is an attribute (``plan``, ``country``, ``company``, …), read as text; an
  empty cell is "unknown" in that version.

Several rows of one user are its versions: each is valid from its ``valid_from`` until the next
one's (Kimball's type 2 dimension, https://www.kimballgroup.com/data-warehouse-business-intelligence-resources/kimball-techniques/dimensional-modeling-techniques/type-2/).
Gold joins an event to the version valid at the event's time (:data:`warehouse.lake.tables.USER_ATTRIBUTES`
holds one row per user, attribute and version).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from warehouse.lake.store import arrow_dataset

#: At most this many bad rows are named in an error (all of them are counted).
_SHOWN = 5
_KEY_COLUMNS = ("app", "user_id", "valid_from")
_RESERVED = ("valid_to", "attribute", "value")


def _read(path: Path) -> pl.DataFrame:
    if path.is_dir():
        frame = pl.from_arrow(arrow_dataset(DeltaTable(str(path))).to_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.select(pl.all().cast(pl.String))
    return pl.read_csv(path, infer_schema=False)


def _parse_time(text: str) -> datetime | None:
    """ISO 8601 date or date-time (Python's ``fromisoformat``); naive is UTC; ``None`` if unreadable."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, 9999 with a negative one
        return None


def _problems(frame: pl.DataFrame, mask: pl.Expr, what: str) -> list[str]:
    lines = frame.filter(mask)["_line"].to_list()
    if not lines:
        return []
    shown = ", ".join(str(line) for line in lines[:_SHOWN]) + (" …" if len(lines) > _SHOWN else "")
    return [f"{len(lines)} row(s) {what} (line {shown})"]


def _attribute_columns(path: Path, columns: list[str]) -> list[str]:
    """The attribute columns of a users source (every column but the key ones).

    Raises:
        ValueError: no ``user_id`` column, no attribute column, or odd column names.
    """
    if "user_id" not in columns:
        raise ValueError(f"{path}: no user_id column (columns: {', '.join(columns)})")
    odd = [c for c in columns if not c.strip() or c != c.strip() or c.startswith("_") or c in _RESERVED]
    if odd:
        raise ValueError(
            f"{path}: column names {odd} are empty, padded, start with '_' or are reserved "
            f"({', '.join(_RESERVED)}: valid_to is each version's next valid_from)"
        )
    attributes = [c for c in columns if c not in _KEY_COLUMNS]
    if not attributes:
        raise ValueError(f"{path}: no attribute columns besides {', '.join(_KEY_COLUMNS)}")
    return attributes


def _check_rows(path: Path, frame: pl.DataFrame, has_app: bool) -> None:
    """Refuse rows without a user id (or app), with an unreadable ``valid_from``, or repeated versions.

    Raises:
        ValueError: the count and first lines of each kind of bad row.
    """
    problems = [
        *_problems(frame, pl.col("user_id").fill_null("") == "", "without a user_id"),
        *(_problems(frame, pl.col("app").fill_null("") == "", "without an app") if has_app else []),
        *_problems(
            frame,
            pl.col("_valid_from").is_null() & (pl.col("valid_from").fill_null("") != ""),
            "with a valid_from that is not an ISO 8601 date or time",
        ),
        *_problems(
            frame,
            pl.struct("app", "user_id", "_valid_from").is_duplicated(),
            "with the same app, user_id and valid_from",
        ),
    ]
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))


def read_users(path: Path, identifier: Callable[[str], str] = str) -> pa.Table:
    """Read a users source into SCD rows: ``(app, user_id, attribute, value, valid_from, valid_to)``.

    ``app`` null means every app; ``valid_from`` null means since always and ``valid_to`` null
    means still valid (UTC timestamps, µs). ``valid_to`` is the next version's ``valid_from`` of the
    same (app, user_id). Empty attribute cells give no row (unknown in that version).
    ``identifier`` maps each user id as silver maps ``user_id`` (its pseudonym when it holds
    personal data), so the join finds the same people. Lines are counted as in the file (the
    header is line 1).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no ``user_id`` column or no attribute column; or rows with an empty
            ``user_id`` or ``app``, an unreadable ``valid_from``, or the same (app, user_id,
            valid_from) twice — with the count and the first lines of each. Nothing is read then.
        polars.exceptions.ComputeError, deltalake.exceptions.DeltaError: the file is not CSV / Delta.
    """
    if not path.exists():
        raise FileNotFoundError(f"users source {path} does not exist")
    frame = _read(path)
    attributes = _attribute_columns(path, frame.columns)
    has_app = "app" in frame.columns
    # Blank lines (a trailing newline too many) are no rows; line numbers count them all the same.
    frame = frame.with_row_index("_line", offset=2).filter(
        ~pl.all_horizontal(pl.exclude("_line").fill_null("").str.strip_chars() == "")
    )
    frame = frame.with_columns(
        pl.col("user_id").str.strip_chars(),
        pl.col("app").str.strip_chars() if has_app else pl.lit(None, pl.String).alias("app"),
        pl.col("valid_from").str.strip_chars()
        if "valid_from" in frame.columns
        else pl.lit(None, pl.String).alias("valid_from"),
    )
    texts = frame["valid_from"].drop_nulls().unique().to_list()
    parsed = {text: _parse_time(text) for text in texts}
    frame = frame.with_columns(
        pl.col("valid_from")
        .replace_strict(parsed, default=None, return_dtype=pl.Datetime("us", "UTC"))
        .alias("_valid_from")
    )
    _check_rows(path, frame, has_app)
    ids = frame["user_id"].unique()
    mapping = dict(zip(ids.to_list(), (identifier(i) for i in ids.to_list()), strict=True))
    versions = (
        frame.with_columns(pl.col("user_id").replace_strict(mapping))
        .sort("app", "user_id", "_valid_from", nulls_last=False)
        .with_columns(pl.col("_valid_from").shift(-1).over("app", "user_id").alias("valid_to"))
        .rename({"_valid_from": "valid_from_ts"})
    )
    long = (
        versions.unpivot(
            index=["app", "user_id", "valid_from_ts", "valid_to"], on=attributes, variable_name="attribute"
        )
        .filter(pl.col("value").is_not_null() & (pl.col("value").str.strip_chars() != ""))
        .select("app", "user_id", "attribute", "value", pl.col("valid_from_ts").alias("valid_from"), "valid_to")
        .sort("app", "user_id", "attribute", "valid_from", nulls_last=False)
    )
    return long.to_arrow()
