-- form_progress, a micro-batch that only inserted events on the refreshed days: its form events are
-- added to form_progress_people (the touched people's rows of a form and day merged with theirs), and
-- each (app, source, day, form) it touched is recomputed from form_progress_people — the people of that
-- form and day, not the day's events. Exactly the rows insert.sql gives.
-- Inputs: form_progress_inputs over people_events of the inserted rows only, refresh_days.
create or replace temp table form_progress_added as
select app, source, day, form, person_id, step, field, events from form_progress_inputs;

create or replace temp table form_progress_merged as
select app, source, day, form, person_id, step, field, cast(sum(events) as bigint) as events
from (
    select state.app, state.source, state.day, state.form, state.person_id, state.step, state.field, state.events
    from form_progress_people as state
    semi join form_progress_added as added
        on added.app = state.app
        and added.source = state.source
        and added.day = state.day
        and added.form = state.form
        and added.person_id = state.person_id
    union all
    select app, source, day, form, person_id, step, field, events from form_progress_added
)
group by all;

delete from form_progress_people as state
using form_progress_added as added
where added.app = state.app
    and added.source = state.source
    and added.day = state.day
    and added.form = state.form
    and added.person_id = state.person_id;

insert into form_progress_people (app, source, day, form, person_id, step, field, events)
select app, source, day, form, person_id, step, field, events from form_progress_merged;

-- the touched forms' days, recomputed from the state
create or replace temp view form_progress_inputs as
select state.app, state.source, state.day, state.form, state.person_id, state.step, state.field, state.events
from form_progress_people as state
semi join (select distinct app, source, day, form from form_progress_added) as touched
    on touched.app = state.app and touched.source = state.source and touched.day = state.day and touched.form = state.form;

delete from form_progress as mart
using (select distinct app, source, day, form from form_progress_added) as touched
where mart.app = touched.app and mart.source = touched.source and mart.day = touched.day and mart.form = touched.form;

insert into form_progress (
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted, reach_rate
)
select
    app, source, day, form, step, field,
    people_started, people_reached, people_furthest, people_abandoned, people_submitted, reach_rate
from form_progress_rows();

drop view form_progress_inputs;

drop table form_progress_merged;

drop table form_progress_added;
