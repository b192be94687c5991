-- form_progress: how far people get in each form, per app, reporting day, form and step (field position).
-- Definition (event conventions in docs/analytics.md): a `form_field` event says a person reached
-- field `field` at position `step` (an integer from 1) of form `form`; a `form_submit` event with the
-- same `form` says they submitted it. Per person, form and day, the furthest step is the highest step
-- reached that day (going back to an earlier field does not lower it; a skipped field still counts as
-- passed). Per step:
--   people_started    people with at least one field event of the form that day (same on every row);
--   people_reached    people whose furthest step is this step or later;
--   people_furthest   people whose furthest step is exactly this one (the distribution of the
--                     furthest field reached; sums to people_started over the form's steps);
--   people_abandoned  of those, the people who did not submit the form that day (the abandonment point);
--   people_submitted  of those, the people who did;
--   reach_rate        people_reached / people_started.
-- Rows run from step 1 to the highest step seen that day; `field` is the name most sent for that
-- step (ties: alphabetical first), null when nobody reached it. Field events with a missing or
-- non-integer step, or a step outside 1..1000, are not counted (they cannot be placed in a form).
-- Grain: (app, source, day, form, step). Source of the formula: form analytics' "field drop-off"
-- (furthest field reached per visitor, abandonment where the last interaction happened), as in
-- Hotjar/Zuko form analytics and Snowplow's form tracking (focus_form/change_form/submit_form).
-- Inputs: people_events (bots excluded), refresh_days(app, source, day); $first_day/$last_day bound the scan.
insert into form_progress (
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted, reach_rate
)
with form_events as (
    select
        app,
        source,
        day,
        person_id,
        event_type,
        nullif(trim(properties ->> '$.form'), '') as form,
        nullif(trim(properties ->> '$.field'), '') as field,
        try_cast(properties ->> '$.step' as integer) as step,
        json_type(properties, '$.step') in ('UBIGINT', 'BIGINT') as step_is_integer
    from people_events
    where day between $first_day and $last_day
        and event_type in ('form_field', 'form_submit')
        and json_type(properties) = 'OBJECT'
),

scoped as (
    select form_events.*
    from form_events
    inner join refresh_days as refresh
        on refresh.app = form_events.app
        and refresh.source = form_events.source
        and refresh.day = form_events.day
    where form_events.form is not null
),

fields as (
    select app, source, day, person_id, form, field, step
    from scoped
    where event_type = 'form_field' and step_is_integer and step between 1 and 1000
),

submits as (
    select distinct app, source, day, person_id, form
    from scoped
    where event_type = 'form_submit'
),

attempts as (
    select
        fields.app,
        fields.source,
        fields.day,
        fields.person_id,
        fields.form,
        max(fields.step) as furthest,
        bool_or(submits.person_id is not null) as submitted
    from fields
    left join submits
        on submits.app = fields.app
        and submits.source = fields.source
        and submits.day = fields.day
        and submits.person_id = fields.person_id
        and submits.form = fields.form
    group by all
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
        select app, source, day, form, step, field, count(*) as events
        from fields
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
from final
