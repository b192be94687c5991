-- The active-users window marts (weekly_active_users, monthly_active_users): one definition, two periods.
-- Per app and reporting day, two standard definitions side by side (PostHog/Amplitude "weekly/monthly active"):
--   {rolling}         distinct people active in the $window_days days ending on `day`
--                     (day - ($window_days - 1) .. day), the rolling definition;
--   {calendar_count}  distinct people active in the calendar $period containing `day` (ISO week, Monday to
--                     Sunday, or calendar month; the same value on every day of it; {calendar} is its first day).
-- The mart's mart.yaml gives $window_days, $period and the column names (whitelisted identifiers formatted in).
-- Grain: (app, source, day), same day spine as daily_active_users. People as in people_events (create_people_events.sql),
-- counted from their person-days (active_person_days), never from events: cost follows the window, not history.
-- Inputs: active_person_days, person_last_active, refresh_days(app, source, day, window_changed, from_state),
-- which hold whole periods around every changed day, and previous_rows (the mart's rows of those days before the
-- refresh): a day whose window holds no changed day keeps its rolling count, only its calendar count is
-- recomputed. Days from_state (select_state_days.sql: no later person-day exists) and the periods holding one
-- count people by their last active day; the others count their window's person-days.
-- $first_day/$last_day bound the person-days read (the caller widens them to the start of the window and period).
insert into {gold_table} (app, source, day, {calendar}, {rolling}, {calendar_count})
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
    select recomputed.app, recomputed.source, recomputed.day, count(distinct people.person_id) as {rolling}
    from recomputed_days as recomputed
    left join people
        on people.app = recomputed.app
        and people.source = recomputed.source
        and people.day between recomputed.day - ($window_days - 1) and recomputed.day
    where not recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select recomputed.app, recomputed.source, recomputed.day, count(state.person_id) as {rolling}
    from recomputed_days as recomputed
    left join person_last_active as state
        on state.app = recomputed.app
        and state.source = recomputed.source
        and state.last_day >= recomputed.day - ($window_days - 1)
    where recomputed.from_state
    group by recomputed.app, recomputed.source, recomputed.day
    union all
    select previous.app, previous.source, previous.day, previous.{rolling}
    from previous_rows as previous
    anti join recomputed_days as recomputed
        on recomputed.app = previous.app and recomputed.source = previous.source and recomputed.day = previous.day
),

periods as (
    select app, source, cast(date_trunc($period, day) as date) as {calendar}, bool_or(from_state) as from_state
    from refresh_days
    group by app, source, {calendar}
),

calendar as (
    select periods.app, periods.source, periods.{calendar}, count(distinct people.person_id) as {calendar_count}
    from periods
    left join people
        on people.app = periods.app
        and people.source = periods.source
        and cast(date_trunc($period, people.day) as date) = periods.{calendar}
    where not periods.from_state
    group by periods.app, periods.source, periods.{calendar}
    union all
    select periods.app, periods.source, periods.{calendar}, count(state.person_id) as {calendar_count}
    from periods
    left join person_last_active as state
        on state.app = periods.app
        and state.source = periods.source
        and state.last_day >= periods.{calendar}
    where periods.from_state
    group by periods.app, periods.source, periods.{calendar}
),

final as (
    select
        rolling.app,
        rolling.source,
        rolling.day,
        calendar.{calendar},
        rolling.{rolling},
        calendar.{calendar_count}
    from rolling
    inner join calendar
        on calendar.app = rolling.app
        and calendar.source = rolling.source
        and calendar.{calendar} = cast(date_trunc($period, rolling.day) as date)
)

select app, source, day, {calendar}, {rolling}, {calendar_count} from final
