-- monthly_active_users: MAU per app and reporting day, two standard definitions side by side:
--   mau_rolling_30d    distinct people active in the 30 days ending on `day` (day-29 .. day),
--                      the rolling definition of PostHog/Amplitude "monthly active";
--   mau_calendar_month distinct people active in the calendar month containing `day`
--                      (the same value on every day of a month; calendar_month is its 1st day).
-- Grain: (app, source, day), same day spine as daily_active_users. People as in people_events (create_people_events.sql).
-- Inputs: people_events, refresh_days(app, source, day); $first_day/$last_day bound the scanned partitions
-- ($first_day is already widened by the caller to the start of the window and of the month).
insert into monthly_active_users (app, source, day, calendar_month, mau_rolling_30d, mau_calendar_month)
with people as (
    select app, source, day, person_id
    from people_events
    where day between $first_day and $last_day
),

rolling as (
    select refresh.app, refresh.source, refresh.day, count(distinct people.person_id) as mau_rolling_30d
    from refresh_days as refresh
    left join people
        on people.app = refresh.app
        and people.source = refresh.source
        and people.day between refresh.day - 29 and refresh.day
    group by refresh.app, refresh.source, refresh.day
),

months as (
    select distinct app, source, cast(date_trunc('month', day) as date) as calendar_month
    from refresh_days
),

calendar as (
    select months.app, months.source, months.calendar_month, count(distinct people.person_id) as mau_calendar_month
    from months
    left join people
        on people.app = months.app
        and people.source = months.source
        and cast(date_trunc('month', people.day) as date) = months.calendar_month
    group by months.app, months.source, months.calendar_month
),

final as (
    select
        rolling.app,
        rolling.source,
        rolling.day,
        calendar.calendar_month,
        rolling.mau_rolling_30d,
        calendar.mau_calendar_month
    from rolling
    inner join calendar
        on calendar.app = rolling.app
        and calendar.source = rolling.source
        and calendar.calendar_month = cast(date_trunc('month', rolling.day) as date)
)

select app, source, day, calendar_month, mau_rolling_30d, mau_calendar_month from final
