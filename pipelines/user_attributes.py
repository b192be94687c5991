"""Load the users source (:mod:`warehouse.users`) into silver's ``user_attributes`` table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from pipelines.erasure import load_tombstones
from pipelines.pseudonyms import Pseudonymizer
from warehouse.lake.store import Lake
from warehouse.lake.tables import USER_ATTRIBUTES
from warehouse.users import read_users

log = logging.getLogger(__name__)

_ORDER = [(name, "ascending") for name in ("app", "user_id", "attribute", "valid_from")]


@dataclass(frozen=True)
class UsersLoad:
    """What a load did: rows (one per user, attribute and version), users, and the table version.

    ``changed`` is false when the source held what the table already held (no commit).
    """

    rows: int
    users: int
    version: int
    changed: bool


def load_user_attributes(store: Lake, users_path: Path | None, pseudonymizer: Pseudonymizer, run_id: str) -> UsersLoad:
    """Read the users source ``users_path`` and replace ``user_attributes`` with it when its content changed.

    User ids are pseudonymized by silver's rule (same key, same scrub rules), so they match
    silver's ``user_id`` (``pseudonymizer``: silver's, with its scrubber); attribute values are
    scrubbed by silver's text rules (they reach a served mart). Erased users' rows are left out
    (:mod:`pipelines.erasure`). Without a users source the table is
    emptied (an unset source means no attributes). The table is overwritten whole in one commit:
    gold marts that read it recompute when its content changes (their definition fingerprint includes it).

    Raises:
        FileNotFoundError, ValueError: from :func:`warehouse.users.read_users` — the table keeps its
            last good content.
        OSError: the pseudonym key cannot be read.
    """
    if users_path is None:
        rows = USER_ATTRIBUTES.schema.empty_table()
    else:
        scrubber = pseudonymizer.scrubber
        source = read_users(users_path, lambda user_id: pseudonymizer.identifier("user_id", user_id))
        tombstones = load_tombstones(store, pseudonymizer)
        if tombstones is not None:  # erased people's attributes are not loaded again
            ids = pl.from_arrow(source.select(["app", "user_id"]))
            assert isinstance(ids, pl.DataFrame)
            source = source.filter(pa.array((~tombstones.user_mask(ids["app"], ids["user_id"])).to_list()))
        # Values reach a served mart: an email, card number or token in a CRM column is masked.
        values = pl.Series(source["value"]).unique()
        masked = dict(zip(values.to_list(), (scrubber.text(v) for v in values.to_list()), strict=True))
        source = source.set_column(
            source.schema.get_field_index("value"), "value", pa.array([masked[v] for v in source["value"].to_pylist()])
        )
        rows = source.append_column("run_id", pa.array([run_id] * source.num_rows, pa.string()))
    rows = rows.select(USER_ATTRIBUTES.schema.names).cast(USER_ATTRIBUTES.schema).sort_by(_ORDER)
    current = store.dataset(USER_ATTRIBUTES).to_table().cast(USER_ATTRIBUTES.schema).sort_by(_ORDER)
    users = len(rows["user_id"].unique())
    content = [name for name in USER_ATTRIBUTES.schema.names if name != "run_id"]
    version = store.version(USER_ATTRIBUTES)
    if version is not None and current.select(content).equals(rows.select(content)):
        return UsersLoad(rows.num_rows, users, version, changed=False)
    version = store.overwrite(USER_ATTRIBUTES, rows, metadata={"eventlake.users_path": str(users_path)})
    log.info("user_attributes: %d rows for %d users from %s (v%d)", rows.num_rows, users, users_path, version)
    return UsersLoad(rows.num_rows, users, version, changed=True)
