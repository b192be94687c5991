-- daily_event_counts: events and distinct people per app, reporting day, event type and bot flag.
-- Grain: (app, source, day, event_type, is_bot); only combinations that occurred have a row.
-- Feeds "events by type per day" (is_bot = false) and "share of bot traffic" (events by is_bot).
-- People: person_id of resolved_events (identity-stitched, as people_events), counted within the group.
-- Inputs: resolved_events, refresh_days(app, source, day); $first_day/$last_day bound the scanned partitions.
insert into daily_event_counts (app, source, day, event_type, is_bot, events, people)
with scoped as (
    select app, source, day, event_type, is_bot, person_id
    from resolved_events
    where day between $first_day and $last_day
),

final as (
    select
        scoped.app,
        scoped.source,
        scoped.day,
        scoped.event_type,
        scoped.is_bot,
        count(*) as events,
        count(distinct scoped.person_id) as people
    from scoped
    inner join refresh_days as refresh on refresh.app = scoped.app and refresh.source = scoped.source and refresh.day = scoped.day
    group by all
)

select app, source, day, event_type, is_bot, events, people from final
