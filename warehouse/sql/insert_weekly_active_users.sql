-- weekly_active_users: WAU per app and reporting day, two standard definitions side by side:
--   wau_rolling_7d     distinct people active in the 7 days ending on `day` (day-6 .. day), the
--                      rolling definition of PostHog/Amplitude "weekly active";
--   wau_calendar_week  distinct people active in the ISO week (Monday to Sunday) containing `day`
--                      (the same value on every day of a week; calendar_week is its Monday).
-- Grain: (app, source, day), same day spine as daily_active_users. People as in people_events (create_people_events.sql),
-- counted from their person-days (active_person_days), never from events: cost follows the window, not history.
-- Inputs: active_person_days, person_last_active, refresh_days(app, source, day, window_changed, from_state),
-- which hold whole ISO weeks around every changed day (window 7 days, lookback 6), and previous_rows (the mart's
-- rows of those days before the refresh): a day whose 7-day window holds no changed day keeps its rolling count,
-- only its calendar-week count is recomputed. Days from_state (select_state_days.sql: no later person-day
-- exists) and the weeks holding one count people by their last active day; the others count their window's
-- person-days. $first_day/$last_day bound the person-days read.
insert into weekly_active_users (app, source, day, calendar_week, wau_rolling_7d, wau_calendar_week)
with people as (
    select app, source, day, person_id
    from active_person_days
    where day between $first_day and $last_day
),

recomputed_days as (
    select refresh.app, refresh.source, refresh.day, refresh.from_state
    from refresh_days as refresh
    left join previous_rows as previous
        on previous.app = refresh.app and previous.source = refresh.source and previous.day = refresh.day
    where refresh.window_changed or previous.day is null
),

rolling as (
    select recomputed.app, recomputed.source, recomputed.day, count(distinct people.person_id) as wau_rolling_7d
    from recomputed_days as recomputed
    left join people
        on people.app = recomputed.app
        and people.source = recomputed.source
        and people.day between recomputed.day - 6 and recomputed.day
    where not recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select recomputed.app, recomputed.source, recomputed.day, count(state.person_id) as wau_rolling_7d
    from recomputed_days as recomputed
    left join person_last_active as state
        on state.app = recomputed.app
        and state.source = recomputed.source
        and state.last_day >= recomputed.day - 6
    where recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select previous.app, previous.source, previous.day, previous.wau_rolling_7d
    from previous_rows as previous
    anti join recomputed_days as recomputed
        on recomputed.app = previous.app and recomputed.source = previous.source and recomputed.day = previous.day
),

weeks as (
    select app, source, cast(date_trunc('week', day) as date) as calendar_week, bool_or(from_state) as from_state
    from refresh_days
    group by app, source, calendar_week
),

calendar as (
    select weeks.app, weeks.source, weeks.calendar_week, count(distinct people.person_id) as wau_calendar_week
    from weeks
    left join people
        on people.app = weeks.app
        and people.source = weeks.source
        and cast(date_trunc('week', people.day) as date) = weeks.calendar_week
    where not weeks.from_state
    group by weeks.app, weeks.source, weeks.calendar_week
    union all
    select weeks.app, weeks.source, weeks.calendar_week, count(state.person_id) as wau_calendar_week
    from weeks
    left join person_last_active as state
        on state.app = weeks.app
        and state.source = weeks.source
        and state.last_day >= weeks.calendar_week
    where weeks.from_state
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
