-- The days recorded for recomputation (gold_recompute_days: an erasure's or a rescrub's days,
-- including those of silver's cold tier, whose changes reach no change feed) that silver versions
-- ($after_version, $until_version] changed, in the shape of select_changed_event_days.sql.
select app, source, day, event_type, true as deleted
from gold_recompute_days
where silver_version > $after_version and silver_version <= $until_version
