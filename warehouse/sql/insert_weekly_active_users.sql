-- weekly_active_users: WAU per app and reporting day, two standard definitions side by side:
--   wau_rolling_7d     distinct people active in the 7 days ending on `day` (day-6 .. day), the
--                      rolling definition of PostHog/Amplitude "weekly active";
--   wau_calendar_week  distinct people active in the ISO week (Monday to Sunday) containing `day`
--                      (the same value on every day of a week; calendar_week is its Monday).
-- Grain: (app, source, day), same day spine as daily_active_users. People as in people_events (create_people_events.sql).
-- Inputs: people_events, refresh_days(app, source, day), which hold whole ISO weeks around every changed day
-- (window 7 days, lookback 6); $first_day/$last_day bound the scanned partitions.
insert into weekly_active_users (app, source, day, calendar_week, wau_rolling_7d, wau_calendar_week)
with people as (
    select app, source, day, person_id
    from people_events
    where day between $first_day and $last_day
),

rolling as (
    select refresh.app, refresh.source, refresh.day, count(distinct people.person_id) as wau_rolling_7d
    from refresh_days as refresh
    left join people
        on people.app = refresh.app
        and people.source = refresh.source
        and people.day between refresh.day - 6 and refresh.day
    group by refresh.app, refresh.source, refresh.day
),

weeks as (
    select distinct app, source, cast(date_trunc('week', day) as date) as calendar_week
    from refresh_days
),

calendar as (
    select weeks.app, weeks.source, weeks.calendar_week, count(distinct people.person_id) as wau_calendar_week
    from weeks
    left join people
        on people.app = weeks.app
        and people.source = weeks.source
        and cast(date_trunc('week', people.day) as date) = weeks.calendar_week
    group by weeks.app, weeks.source, weeks.calendar_week
),

final as (
    select
        rolling.app,
        rolling.source,
        rolling.day,
        calendar.calendar_week,
        rolling.wau_rolling_7d,
        calendar.wau_calendar_week
    from rolling
    inner join calendar
        on calendar.app = rolling.app
        and calendar.source = rolling.source
        and calendar.calendar_week = cast(date_trunc('week', rolling.day) as date)
)

select app, source, day, calendar_week, wau_rolling_7d, wau_calendar_week from final
