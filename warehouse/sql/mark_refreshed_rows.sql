-- Stamp the rows of {gold_table} just recomputed with the silver version they were computed from
-- (row-level lineage: which rows a refresh rewrote can be read back from the table itself). Inserted
-- rows have no version yet; rows of a refreshed day the refresh kept (a partial day's, Mart.partial_days)
-- keep theirs.
update {gold_table} as mart
set silver_version = $silver_version
from refresh_days as refresh
where mart.app = refresh.app
    and mart.source = refresh.source
    and mart.day = refresh.day
    and mart.silver_version is null
