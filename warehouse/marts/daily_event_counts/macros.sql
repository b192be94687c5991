-- daily_event_counts_facts(): one row per event of the refreshed days with the mart's grain and its
-- person (resolved_events: identity-stitched, bots included, person_id null when the event has no id).
-- One definition for insert.sql (a recomputed day), maintain.sql (its people) and append.sql (a
-- micro-batch's inserted rows, when resolved_events holds only those).
-- Inputs: resolved_events, refresh_days(app, source, day).
create or replace temp macro daily_event_counts_facts() as table
select events.app, events.source, events.day, events.event_type, events.is_bot, events.person_id
from resolved_events as events
semi join refresh_days as refresh
    on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day;
