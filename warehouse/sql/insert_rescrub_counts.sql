-- Record what a rescrub's rewrite of the cold partition $event_date changes in data_quality_daily's
-- counts (count_changes: app, source, day, outcome, events; the mart's select_silver_counts.sql over
-- the partition's changed rows, old ones as deletes, new ones as inserts), before its commit.
-- Replaced, not added, when a run after a crash records the same partition again.
insert or replace into rescrub_count_changes
    (request_id, event_date, app, source, day, outcome, events, committed, silver_version)
select $request_id, $event_date, app, source, day, outcome, events, false, null
from count_changes
where events <> 0
