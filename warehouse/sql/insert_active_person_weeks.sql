-- active_person_weeks: which people were active in which ISO week, per app and source — the
-- incremental state retention cohorts are computed from (person-level: kept out of the serving snapshot).
-- Grain: (app, source, day, person_id), `day` being the week's Monday. People as in people_events
-- (create_people_events.sql), read as their person-days (active_person_days, not events). A changed day
-- rewrites its whole ISO week (whole_week refresh).
-- Inputs: active_person_days, refresh_days(app, source, day) (every day of the touched weeks);
-- $first_day/$last_day bound the person-days read.
insert into active_person_weeks (app, source, day, person_id)
with weeks as (
    select distinct app, source, cast(date_trunc('week', day) as date) as week
    from refresh_days
),

final as (
    select distinct people.app, people.source, weeks.week as day, people.person_id
    from active_person_days as people
    inner join weeks
        on weeks.app = people.app
        and weeks.source = people.source
        and weeks.week = cast(date_trunc('week', people.day) as date)
    where people.day between $first_day and $last_day
)

select app, source, day, person_id from final
