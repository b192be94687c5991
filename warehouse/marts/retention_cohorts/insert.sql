-- retention_cohorts: weekly first-seen cohorts and their N-week retention, per app and source.
-- Definition (PostHog "Retention" with a first-time cohort, weekly periods; Amplitude "N-week
-- retention"): a person's cohort is the ISO week (Monday) of their first activity in the app and
-- source; week_number n counts the people of the cohort active in the week cohort_week + n weeks.
--   cohort_people    people whose first active week is cohort_week;
--   retained_people  of those, the people active in week n (n = 0 is the whole cohort);
--   retention_rate   retained_people / cohort_people.
-- Every cohort has a row for each week from 0 to the last week with activity in its app and source
-- (0 where nobody came back), so the triangle has no holes. The last week may be partial.
-- Grain: (app, source, cohort_week, week_number). People as in people_events, bots excluded.
-- Input: active_person_weeks (incremental by changed week). A full rebuild of this small aggregate:
-- one person's late first activity moves them to an earlier cohort, which changes two cohorts' rows.
delete from retention_cohorts;

insert into retention_cohorts (app, source, cohort_week, week_number, cohort_people, retained_people, retention_rate)
with firsts as (
    select app, source, person_id, min(day) as cohort_week
    from active_person_weeks
    group by all
),

cohorts as (
    select app, source, cohort_week, count(*) as cohort_people
    from firsts
    group by all
),

returns as (
    select
        firsts.app,
        firsts.source,
        firsts.cohort_week,
        cast(datediff('week', firsts.cohort_week, active.day) as integer) as week_number,
        count(*) as retained_people
    from firsts
    inner join active_person_weeks as active
        on active.app = firsts.app
        and active.source = firsts.source
        and active.person_id = firsts.person_id
    group by all
),

last_weeks as (
    select app, source, max(day) as last_week
    from active_person_weeks
    group by all
),

grid as (
    select cohorts.app, cohorts.source, cohorts.cohort_week, cohorts.cohort_people, cast(series.n as integer) as week_number
    from cohorts
    inner join last_weeks on last_weeks.app = cohorts.app and last_weeks.source = cohorts.source,
        range(0, datediff('week', cohorts.cohort_week, last_weeks.last_week) + 1) as series (n)
)

select
    grid.app,
    grid.source,
    grid.cohort_week,
    grid.week_number,
    grid.cohort_people,
    coalesce(returns.retained_people, 0) as retained_people,
    coalesce(returns.retained_people, 0) / grid.cohort_people as retention_rate
from grid
left join returns
    on returns.app = grid.app
    and returns.source = grid.source
    and returns.cohort_week = grid.cohort_week
    and returns.week_number = grid.week_number
