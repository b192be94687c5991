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
-- Inputs: form_progress_rows() (macros.sql) over form_progress_inputs: the refreshed days' form events
-- (a recompute) or form_progress_people (append.sql); $first_day/$last_day bound the scan.
insert into form_progress (
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted, reach_rate
)
select
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted, reach_rate
from form_progress_rows()
where day between $first_day and $last_day
