-- component_interactions_facts(): one row per interaction of the refreshed days with its grain and
-- person. An interaction is any people_events row whose properties name a component — `component` (a
-- stable component name) or else `selector` (a CSS selector), see the event conventions in
-- docs/analytics.md; `interaction` is its event type (click, component_view, …). page_url is the page
-- without query string and fragment (`/dashboard?tab=2#top` counts as `/dashboard`); events without
-- a page count under '(no page)'. One definition for insert.sql, maintain.sql and append.sql.
-- Inputs: people_events (bots excluded), refresh_days(app, source, day).
create or replace temp macro component_interactions_facts() as table
select app, source, day, page_url, component, interaction, person_id
from (
    select
        events.app,
        events.source,
        events.day,
        events.person_id,
        events.event_type as interaction,
        coalesce(nullif(regexp_replace(events.page_url, '[?#].*$', ''), ''), '(no page)') as page_url,
        coalesce(
            nullif(trim(events.properties ->> '$.component'), ''), nullif(trim(events.properties ->> '$.selector'), '')
        ) as component
    from people_events as events
    semi join refresh_days as refresh
        on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
    where json_type(events.properties) = 'OBJECT'
)
where component is not null;
