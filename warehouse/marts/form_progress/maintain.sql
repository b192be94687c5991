-- form_progress_people after a recompute of the refreshed days: exactly what those rows were computed
-- from (same transaction). Inputs: form_progress_inputs over the refreshed days' events, refresh_days.
delete from form_progress_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into form_progress_people (app, source, day, form, person_id, step, field, events)
select app, source, day, form, person_id, step, field, events from form_progress_inputs;
