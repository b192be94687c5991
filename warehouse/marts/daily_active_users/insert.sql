-- daily_active_users: DAU, the number of distinct people active per app per reporting day, split into
-- new and returning people.
-- Grain: (app, source, day); every day between an (app, source)'s first and last event day has a row (0 when idle).
-- People: view people_events (create_people_events.sql): identity stitched, bots excluded; read as their
-- person-days (active_person_days).
-- Definition as in PostHog "unique users" trends / Mixpanel DAU: count(distinct person) per day.
-- New people: those whose first activity (person_first_seen, per app and source, identity stitched)
-- falls on that reporting day; returning people: the others active that day (Google Analytics' new
-- vs returning users; PostHog lifecycle's "new"). new_people + returning_people = dau.
-- Inputs: active_person_days, person_first_seen, refresh_days(app, source, day); $first_day/$last_day bound
-- the scanned partitions.
insert into daily_active_users (app, source, day, dau, new_people, returning_people)
with people as (
    select app, source, day, person_id
    from active_person_days
    where day between $first_day and $last_day
),

final as (
    select
        refresh.app,
        refresh.source,
        refresh.day,
        count(people.person_id) as dau,
        count(people.person_id) filter (
            where cast(timezone((select timezone from reporting_settings), seen.first_seen) as date) = refresh.day
        ) as new_people
    from refresh_days as refresh
    left join people
        on people.app = refresh.app and people.source = refresh.source and people.day = refresh.day
    left join person_first_seen as seen
        on seen.app = people.app and seen.source = people.source and seen.person_id = people.person_id
    group by refresh.app, refresh.source, refresh.day
)

select app, source, day, dau, new_people, dau - new_people as returning_people from final
