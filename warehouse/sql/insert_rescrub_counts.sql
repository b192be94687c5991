-- Record what a rescrub's rewrite of the cold partition $event_date changes in data_quality_daily's
-- counts (count_changes: app, source, day, outcome, events; the mart's select_silver_counts.sql over
-- the partition's changed rows, old ones as deletes, new ones as inserts), before its commit, which
-- records $attempt as its application transaction version.
insert or replace into rescrub_count_changes
    (request_id, event_date, attempt, app, source, day, outcome, events, committed, silver_version)
select $request_id, $event_date, $attempt, app, source, day, outcome, events, false, null
from count_changes
where events <> 0
