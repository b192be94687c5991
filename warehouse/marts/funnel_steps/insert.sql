-- funnel_steps: ordered funnels per app, source, funnel, period and step.
-- Definition (PostHog's sequential funnels, https://posthog.com/docs/product-analytics/funnels):
--   an attempt starts at a person's first step-1 event in the period (reporting day, or ISO week from Monday);
--   step k+1 is reached at the person's first step-(k+1) event at or after the moment step k was
--   reached (strictly after when steps k and k+1 share an event type, so one event never counts for
--   two steps, as PostHog does), and no later than conversion_window_s after the attempt started. Per step:
--   people                  distinct people whose attempt reached the step;
--   conversion_rate         people / people at step 1;
--   step_conversion_rate    people / people at the step before (1 at step 1, 0 when nobody reached that one);
--   dropped_off             people who reached the step but not the next (0 at the last step);
--   median_s_from_previous  median seconds from reaching the step before to reaching this one (null at step 1).
-- Grain: (app, source, funnel, period, day, step); day is the period's first day; only periods someone entered,
-- every step of the funnel listed for them. People as in people_events (create_people_events.sql): bots excluded.
-- Funnels: tables funnel_definitions and funnel_step_matchers (warehouse/funnels.py, warehouse/funnels.yaml).
-- Inputs: refresh_days(app, source, day) — whole ISO weeks, see select_refresh_days.sql; events are read from
-- $first_day to $last_day (the caller adds the longest conversion window, in whole days, past the last refreshed day).
insert into funnel_steps (
    app, source, funnel, period, day, step, step_name, people, conversion_rate, step_conversion_rate,
    dropped_off, median_s_from_previous
)
with recursive repeats as (
    -- steps sharing an event type with the step before: reached only strictly after it
    select distinct current_step.funnel, current_step.step
    from funnel_step_matchers as current_step
    inner join funnel_step_matchers as previous_step
        on previous_step.funnel = current_step.funnel
        and previous_step.step = current_step.step - 1
        and previous_step.event_type = current_step.event_type
),

events as (
    select
        people.app,
        people.source,
        people.person_id,
        people.day,
        people."timestamp" as ts,
        matcher.funnel,
        matcher.step,
        repeats.step is not null as strictly_after
    from people_events as people
    inner join funnel_step_matchers as matcher on matcher.event_type = people.event_type
    inner join funnel_definitions as funnel
        on funnel.funnel = matcher.funnel and (funnel.app is null or funnel.app = people.app)
    left join repeats on repeats.funnel = matcher.funnel and repeats.step = matcher.step
    where people.day between $first_day and $last_day
),

periods as (
    select app, source, 'day' as period, day as period_start, day as period_end from refresh_days
    union all
    select app, source, 'week' as period, day as period_start, day + 6 as period_end
    from refresh_days
    where isodow(day) = 1
),

windows as (
    select distinct funnel, conversion_window_s from funnel_definitions
),

entries as (
    select
        periods.app,
        periods.source,
        periods.period,
        periods.period_start,
        events.funnel,
        events.person_id,
        min(events.ts) as entered_at
    from periods
    inner join events
        on events.app = periods.app
        and events.source = periods.source
        and events.step = 1
        and events.day between periods.period_start and periods.period_end
    group by periods.app, periods.source, periods.period, periods.period_start, events.funnel, events.person_id
),

reached (app, source, period, period_start, funnel, person_id, step, deadline, reached_at, previous_at) as (
    select
        entries.app,
        entries.source,
        entries.period,
        entries.period_start,
        entries.funnel,
        entries.person_id,
        1,
        entries.entered_at + to_seconds(windows.conversion_window_s),
        entries.entered_at,
        cast(null as timestamptz)
    from entries
    inner join windows on windows.funnel = entries.funnel
    union all
    select
        attempt.app,
        attempt.source,
        attempt.period,
        attempt.period_start,
        attempt.funnel,
        attempt.person_id,
        attempt.step + 1,
        attempt.deadline,
        min(events.ts),
        attempt.reached_at
    from reached as attempt
    inner join events
        on events.app = attempt.app
        and events.source = attempt.source
        and events.funnel = attempt.funnel
        and events.person_id = attempt.person_id
        and events.step = attempt.step + 1
        and events.ts >= attempt.reached_at
        and (events.ts > attempt.reached_at or not events.strictly_after)
        and events.ts <= attempt.deadline
    group by
        attempt.app,
        attempt.source,
        attempt.period,
        attempt.period_start,
        attempt.funnel,
        attempt.person_id,
        attempt.step,
        attempt.deadline,
        attempt.reached_at
),

step_people as (
    select
        app,
        source,
        period,
        period_start,
        funnel,
        step,
        count(*) as people,
        median(epoch(reached_at) - epoch(previous_at)) as median_s_from_previous
    from reached
    group by app, source, period, period_start, funnel, step
),

grid as (
    select distinct entries.app, entries.source, entries.period, entries.period_start, entries.funnel, steps.step, steps.step_name
    from entries
    inner join (select distinct funnel, step, step_name from funnel_step_matchers) as steps on steps.funnel = entries.funnel
),

counted as (
    select
        grid.app,
        grid.source,
        grid.funnel,
        grid.period,
        grid.period_start,
        grid.step,
        grid.step_name,
        coalesce(step_people.people, 0) as people,
        step_people.median_s_from_previous
    from grid
    left join step_people
        on step_people.app = grid.app
        and step_people.source = grid.source
        and step_people.period = grid.period
        and step_people.period_start = grid.period_start
        and step_people.funnel = grid.funnel
        and step_people.step = grid.step
),

final as (
    select
        app,
        source,
        funnel,
        period,
        period_start as day,
        step,
        step_name,
        people,
        people / first_value(people) over attempt as conversion_rate,
        case
            when step = 1 then 1.0
            else coalesce(people / nullif(lag(people) over attempt, 0), 0.0)
        end as step_conversion_rate,
        people - coalesce(lead(people) over attempt, people) as dropped_off,
        median_s_from_previous
    from counted
    window attempt as (partition by app, source, funnel, period, period_start order by step)
)

select
    app, source, funnel, period, day, step, step_name, people, conversion_rate, step_conversion_rate,
    dropped_off, median_s_from_previous
from final
