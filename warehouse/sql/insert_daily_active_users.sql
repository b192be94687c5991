-- daily_active_users: DAU, the number of distinct people active per app per reporting day.
-- Grain: (app, source, day); every day between an (app, source)'s first and last event day has a row (0 when idle).
-- People: view people_events (create_people_events.sql): user id else session id, bots excluded.
-- Definition as in PostHog "unique users" trends / Mixpanel DAU: count(distinct person) per day.
-- Inputs: people_events, refresh_days(app, source, day); $first_day/$last_day bound the scanned partitions.
insert into daily_active_users (app, source, day, dau)
with people as (
    select app, source, day, person_id
    from people_events
    where day between $first_day and $last_day
),

final as (
    select refresh.app, refresh.source, refresh.day, count(distinct people.person_id) as dau
    from refresh_days as refresh
    left join people
        on people.app = refresh.app and people.source = refresh.source and people.day = refresh.day
    group by refresh.app, refresh.source, refresh.day
)

select app, source, day, dau from final
