-- component_interactions: how people use each UI component, per app, reporting day, page and interaction.
-- Definition: an interaction is any people_events row whose properties name a component —
-- `component` (a stable component name) or else `selector` (a CSS selector), see the event
-- conventions in docs/analytics.md; `interaction` is its event type (click, component_view, …).
-- page_url is the page without query string and fragment (`/dashboard?tab=2#top` counts as
-- `/dashboard`); events without a page count under '(no page)'.
-- Grain: (app, source, day, page_url, component, interaction): events and distinct people.
-- Source of the formula: autocapture element stats as in PostHog's heatmaps/"clickmaps" and
-- Snowplow's link/element click tracking — counts and unique users per element and page.
-- Inputs: people_events (bots excluded), refresh_days(app, source, day); $first_day/$last_day bound the scan.
insert into component_interactions (app, source, day, page_url, component, interaction, events, people)
with interactions as (
    select
        app,
        source,
        day,
        person_id,
        event_type as interaction,
        coalesce(nullif(regexp_replace(page_url, '[?#].*$', ''), ''), '(no page)') as page_url,
        coalesce(
            nullif(trim(properties ->> '$.component'), ''), nullif(trim(properties ->> '$.selector'), '')
        ) as component
    from people_events
    where day between $first_day and $last_day
        and json_type(properties) = 'OBJECT'
),

final as (
    select
        interactions.app,
        interactions.source,
        interactions.day,
        interactions.page_url,
        interactions.component,
        interactions.interaction,
        count(*) as events,
        count(distinct interactions.person_id) as people
    from interactions
    inner join refresh_days as refresh
        on refresh.app = interactions.app
        and refresh.source = interactions.source
        and refresh.day = interactions.day
    where interactions.component is not null
    group by all
)

select app, source, day, page_url, component, interaction, events, people from final
