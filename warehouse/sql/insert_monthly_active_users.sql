-- monthly_active_users: MAU per app and reporting day, two standard definitions side by side:
--   mau_rolling_30d    distinct people active in the 30 days ending on `day` (day-29 .. day),
--                      the rolling definition of PostHog/Amplitude "monthly active";
--   mau_calendar_month distinct people active in the calendar month containing `day`
--                      (the same value on every day of a month; calendar_month is its 1st day).
-- Grain: (app, source, day), same day spine as daily_active_users. People as in people_events (create_people_events.sql),
-- counted from their person-days (active_person_days), never from events: cost follows the window, not history.
-- Inputs: active_person_days, person_last_active, refresh_days(app, source, day, window_changed, from_state) —
-- every day of a changed day's month — and previous_rows (the mart's rows of those days before the refresh): a
-- day whose 30-day window holds no changed day keeps its rolling count, only its calendar-month count is
-- recomputed. Days from_state (select_state_days.sql: no later person-day exists) and the months holding one
-- count people by their last active day; the others count their window's person-days.
-- $first_day/$last_day bound the person-days read (the caller widens them to the start of the window and month).
insert into monthly_active_users (app, source, day, calendar_month, mau_rolling_30d, mau_calendar_month)
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
    select recomputed.app, recomputed.source, recomputed.day, count(distinct people.person_id) as mau_rolling_30d
    from recomputed_days as recomputed
    left join people
        on people.app = recomputed.app
        and people.source = recomputed.source
        and people.day between recomputed.day - 29 and recomputed.day
    where not recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select recomputed.app, recomputed.source, recomputed.day, count(state.person_id) as mau_rolling_30d
    from recomputed_days as recomputed
    left join person_last_active as state
        on state.app = recomputed.app
        and state.source = recomputed.source
        and state.last_day >= recomputed.day - 29
    where recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select previous.app, previous.source, previous.day, previous.mau_rolling_30d
    from previous_rows as previous
    anti join recomputed_days as recomputed
        on recomputed.app = previous.app and recomputed.source = previous.source and recomputed.day = previous.day
),

months as (
    select app, source, cast(date_trunc('month', day) as date) as calendar_month, bool_or(from_state) as from_state
    from refresh_days
    group by app, source, calendar_month
),

calendar as (
    select months.app, months.source, months.calendar_month, count(distinct people.person_id) as mau_calendar_month
    from months
    left join people
        on people.app = months.app
        and people.source = months.source
        and cast(date_trunc('month', people.day) as date) = months.calendar_month
    where not months.from_state
    group by months.app, months.source, months.calendar_month
    union all
    select months.app, months.source, months.calendar_month, count(state.person_id) as mau_calendar_month
    from months
    left join person_last_active as state
        on state.app = months.app
        and state.source = months.source
        and state.last_day >= months.calendar_month
    where months.from_state
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
