-- daily_active_users: DAU, the number of distinct people active per app per UTC day.
-- Grain: (app, day); every day between an app's first and last event day has a row (0 when idle).
-- Person key: user_id, else session_id (anonymous visitors); bot traffic is excluded.
-- Definition as in PostHog "unique users" trends / Mixpanel DAU: count(distinct person) per day.
-- Inputs: silver_events, refresh_days(app, day); $first_day/$last_day bound the scanned partitions.
insert into daily_active_users (app, day, dau)
with people_events as (
    select app, event_date as day, coalesce(user_id, session_id) as person_id
    from silver_events
    where event_date between $first_day and $last_day
        and not is_bot
        and coalesce(user_id, session_id) is not null
),

final as (
    select refresh.app, refresh.day, count(distinct people.person_id) as dau
    from refresh_days as refresh
    left join people_events as people on people.app = refresh.app and people.day = refresh.day
    group by refresh.app, refresh.day
)

select app, day, dau from final
