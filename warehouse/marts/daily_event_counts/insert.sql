-- daily_event_counts: events and distinct people per app, reporting day, event type and bot flag.
-- Grain: (app, source, day, event_type, is_bot); only combinations that occurred have a row.
-- Feeds "events by type per day" (is_bot = false) and "share of bot traffic" (events by is_bot).
-- People: person_id of resolved_events (identity-stitched, as people_events), counted within the group.
-- Inputs: daily_event_counts_facts() (macros.sql) over the refreshed days; $first_day/$last_day bound
-- the scan. A day whose only change is inserted events is not recomputed here: append.sql adds them.
insert into daily_event_counts (app, source, day, event_type, is_bot, events, people)
select app, source, day, event_type, is_bot, count(*) as events, count(distinct person_id) as people
from daily_event_counts_facts()
where day between $first_day and $last_day
group by all
