-- The refreshed days of a mart that counts people over windows (WAU, MAU, active_person_weeks), marked by
-- where their counts come from.
--   from_state: no person-day of the (app, source) is later than the day (it is on or after the last day anyone
--     was active), so the people of any window ending on it — or of a calendar $period (week or month) holding
--     such a day — are those whose last active day (person_last_active) is on or after the window's first day:
--     such counts follow the number of people, never the window's person-days.
--   reads_window: the day's own rolling window changed (window_changed) or its calendar $period holds no day
--     from_state, and the day is not from_state: its counts read person-days (active_person_days). The caller
--     bounds the person-days scanned by these days.
-- An (app, source) without people counts none either way (from_state).
-- Grain: one row per refresh_days row. Inputs: refresh_days(app, source, day, window_changed), person_last_active.
with latest as (
    select app, source, max(last_day) as last_day
    from person_last_active
    group by app, source
),

marked as (
    select
        refresh.app,
        refresh.source,
        refresh.day,
        refresh.window_changed,
        coalesce(refresh.day >= latest.last_day, true) as from_state
    from refresh_days as refresh
    left join latest
        on latest.app = refresh.app and latest.source = refresh.source
)

select
    app,
    source,
    day,
    window_changed,
    from_state,
    not from_state
    and (window_changed or not bool_or(from_state) over (partition by app, source, date_trunc($period, day)))
        as reads_window
from marked
order by app, source, day
