-- The count changes of the rescrubs of silver's cold tier (rescrub_count_changes) that silver
-- versions ($after_version, $until_version] carry, in the shape of data_quality_daily's
-- select_silver_counts.sql (app, source, day: UTC received day, outcome, events).
select app, source, day, outcome, cast(sum(events) as bigint) as events
from rescrub_count_changes
where silver_version > $after_version and silver_version <= $until_version
group by all
