-- active_person_days: which people were active on which reporting day, per app and source — the compact
-- state the people metrics over several days (DAU's new/returning split, rolling and calendar WAU/MAU,
-- active_person_weeks) count from, so a new day's update reads its own events once and the windows
-- before it as person-days, never as events (person-level: kept out of the serving snapshot).
-- Grain: (app, source, day, person_id). People as in people_events (create_people_events.sql): identity
-- stitched, bots excluded; an identity merge marks the merged person's days as changed, so they are rewritten.
-- Inputs: people_events, refresh_days(app, source, day); $first_day/$last_day bound the scanned partitions.
insert into active_person_days (app, source, day, person_id)
select distinct people.app, people.source, people.day, people.person_id
from people_events as people
semi join refresh_days as refresh
    on refresh.app = people.app and refresh.source = people.source and refresh.day = people.day
where people.day between $first_day and $last_day
