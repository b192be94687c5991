-- The (app, source, day) triples whose mart rows may change, `day` a calendar day of the reporting
-- time zone ($timezone, IANA): the days of changed silver rows of the event types the mart reads
-- (changed_event_days: app, source, day, event_type, deleted; select_changed_event_days.sql), the days
-- first visits moved away from (moved_first_visits: app, source, timestamp; empty for marts that do
-- not count new people), and the days identity merges touched (merged_days: app, source, day as UTC
-- days, so widened to the previous and next day unless the reporting zone is UTC).
-- appended: the day's only change is silver rows inserted (no row deleted, no merge, no first visit
-- moved): a mart with an append.sql adds them to its rows instead of recomputing the day.
with days as (
    select app, source, day, not deleted as appended
    from changed_event_days
    union all
    select app, source, cast(timezone($timezone, "timestamp") as date) as day, false as appended
    from moved_first_visits
    union all
    select merged.app, merged.source, cast(merged.day + shift.days as date) as day, false as appended
    from merged_days as merged,
        unnest(case when $timezone = 'UTC' then [0] else [-1, 0, 1] end) as shift (days)
)

select app, source, day, bool_and(appended) as appended
from days
group by all
