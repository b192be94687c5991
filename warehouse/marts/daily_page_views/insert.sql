-- daily_page_views: page views and distinct people per app, reporting day and page URL (people only).
-- Grain: (app, source, day, page_url). page_view events of people_events' population (bots excluded),
-- URLs as scrubbed in silver. Feeds "top pages".
-- Inputs: resolved_events, refresh_days(app, source, day); $first_day/$last_day bound the scanned partitions.
insert into daily_page_views (app, source, day, page_url, views, people)
with page_views as (
    select app, source, day, page_url, person_id
    from resolved_events
    where day between $first_day and $last_day
        and event_type = 'page_view'
        and not is_bot
        and page_url is not null
),

final as (
    select
        page_views.app,
        page_views.source,
        page_views.day,
        page_views.page_url,
        count(*) as views,
        count(distinct page_views.person_id) as people
    from page_views
    inner join refresh_days as refresh on refresh.app = page_views.app
        and refresh.source = page_views.source
        and refresh.day = page_views.day
    group by all
)

select app, source, day, page_url, views, people from final
