-- The (app, source, day) triples whose mart rows may change, `day` a calendar day of the reporting
-- time zone ($timezone, IANA): the days of changed silver rows of the event types the mart reads
-- (changed_event_days: app, source, day, event_type, select_changed_event_days.sql), the days
-- first visits moved away from (moved_first_visits: app, source, timestamp; empty for marts that do
-- not count new people), and the days identity merges touched (merged_days: app, source, day as UTC
-- days, so widened to the previous and next day unless the reporting zone is UTC).
select distinct app, source, day
from changed_event_days
union
select distinct app, source, cast(timezone($timezone, "timestamp") as date) as day
from moved_first_visits
union
select distinct merged.app, merged.source, cast(merged.day + shift.days as date) as day
from merged_days as merged,
    unnest(case when $timezone = 'UTC' then [0] else [-1, 0, 1] end) as shift (days)
