-- form_progress_inputs: the refreshed days' form events (people_events; definitions in insert.sql's
-- header) as what form_progress_people keeps: per app, source, day, form, person, step and field name
-- the number of valid field events (step an integer 1..1000), and per submitting person a row with no
-- step and no field (events: their submits). append.sql replaces the view by the state's rows.
create or replace temp view form_progress_inputs as
with form_events as (
    select
        events.app,
        events.source,
        events.day,
        events.person_id,
        events.event_type,
        nullif(trim(events.properties ->> '$.form'), '') as form,
        nullif(trim(events.properties ->> '$.field'), '') as field,
        try_cast(events.properties ->> '$.step' as integer) as step,
        json_type(events.properties, '$.step') in ('UBIGINT', 'BIGINT') as step_is_integer
    from people_events as events
    semi join refresh_days as refresh
        on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
    where events.event_type in ('form_field', 'form_submit')
        and json_type(events.properties) = 'OBJECT'
)

select app, source, day, form, person_id, step, field, count(*) as events
from form_events
where form is not null and event_type = 'form_field' and step_is_integer and step between 1 and 1000
group by all
union all
select app, source, day, form, person_id, null::integer as step, null::varchar as field, count(*) as events
from form_events
where form is not null and event_type = 'form_submit'
group by all;

-- form_progress_rows(): the mart's rows of the (app, source, day, form)s in form_progress_inputs (the
-- formula: insert.sql's header). One definition for insert.sql and append.sql.
create or replace temp macro form_progress_rows() as table
with attempts as (
    select
        app,
        source,
        day,
        person_id,
        form,
        max(step) as furthest,
        bool_or(step is null) as submitted
    from form_progress_inputs
    group by all
    having max(step) is not null
),

forms as (
    select app, source, day, form, count(*) as people_started, max(furthest) as last_step
    from attempts
    group by all
),

steps as (
    select forms.app, forms.source, forms.day, forms.form, forms.people_started, series.step
    from forms, range(1, forms.last_step + 1) as series (step)
),

field_names as (
    select app, source, day, form, step, arg_min(field, (-events, field)) as field
    from (
        select app, source, day, form, step, field, sum(events) as events
        from form_progress_inputs
        where field is not null
        group by all
    )
    group by all
),

final as (
    select
        steps.app,
        steps.source,
        steps.day,
        steps.form,
        cast(steps.step as integer) as step,
        field_names.field,
        steps.people_started,
        count(attempts.person_id) filter (where attempts.furthest >= steps.step) as people_reached,
        count(attempts.person_id) filter (where attempts.furthest = steps.step) as people_furthest,
        count(attempts.person_id) filter (where attempts.furthest = steps.step and not attempts.submitted)
            as people_abandoned,
        count(attempts.person_id) filter (where attempts.furthest = steps.step and attempts.submitted)
            as people_submitted
    from steps
    left join attempts
        on attempts.app = steps.app
        and attempts.source = steps.source
        and attempts.day = steps.day
        and attempts.form = steps.form
    left join field_names
        on field_names.app = steps.app
        and field_names.source = steps.source
        and field_names.day = steps.day
        and field_names.form = steps.form
        and field_names.step = steps.step
    group by all
)

select
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted,
    people_reached / people_started as reach_rate
from final;
