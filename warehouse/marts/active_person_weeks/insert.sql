-- active_person_weeks: which people were active in which ISO week, per app and source — the
-- incremental state retention cohorts are computed from (person-level: kept out of the serving snapshot).
-- Grain: (app, source, day, person_id), `day` being the week's Monday. People as in people_events
-- (create_people_events.sql), read as their person-days (active_person_days, not events). A changed day
-- rewrites its whole ISO week (whole_week refresh).
-- Inputs: active_person_days, person_last_active, refresh_days(app, source, day, from_state) (every day of the
-- touched weeks): a week holding a day from_state (select_state_days.sql: no later person-day exists) has the
-- people whose last active day is in it or later; the other weeks read their person-days.
-- $first_day/$last_day bound the person-days read.
insert into active_person_weeks (app, source, day, person_id)
with weeks as (
    select app, source, cast(date_trunc('week', day) as date) as week, bool_or(from_state) as from_state
    from refresh_days
    group by app, source, week
),

final as (
    select distinct people.app, people.source, weeks.week as day, people.person_id
    from active_person_days as people
    inner join weeks
        on weeks.app = people.app
        and weeks.source = people.source
        and weeks.week = cast(date_trunc('week', people.day) as date)
    where people.day between $first_day and $last_day and not weeks.from_state
    union all
    select state.app, state.source, weeks.week as day, state.person_id
    from person_last_active as state
    inner join weeks
        on weeks.app = state.app
        and weeks.source = state.source
        and state.last_day >= weeks.week
    where weeks.from_state
)

select app, source, day, person_id from final
