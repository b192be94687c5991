-- daily_page_views_facts(): one row per page view of the refreshed days with its page and person:
-- page_view events of people_events' population (resolved_events without bots), URLs as scrubbed in
-- silver, views without a URL left out. One definition for insert.sql, maintain.sql and append.sql.
-- Inputs: resolved_events, refresh_days(app, source, day).
create or replace temp macro daily_page_views_facts() as table
select events.app, events.source, events.day, events.page_url, events.person_id
from resolved_events as events
semi join refresh_days as refresh
    on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
where events.event_type = 'page_view' and not events.is_bot and events.page_url is not null;
