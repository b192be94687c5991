-- error_summary, a micro-batch that only inserted events on the refreshed days: its errors are added to
-- each group's events, its people not counted yet (not in error_summary_people) to the group's people,
-- and the group's first and last seen, type and title (the alphabetically first) widened to them;
-- exactly the numbers insert.sql gives. New groups start from zero.
-- Inputs: error_summary_facts() over people_events of the inserted rows only, refresh_days.
create or replace temp table error_summary_new_people as
select distinct facts.app, facts.source, facts.day, facts.fingerprint, facts.person_id
from error_summary_facts() as facts
anti join error_summary_people as state
    on state.app = facts.app
    and state.source = facts.source
    and state.day = facts.day
    and state.fingerprint = facts.fingerprint
    and state.person_id = facts.person_id;

insert into error_summary_people (app, source, day, fingerprint, person_id)
select app, source, day, fingerprint, person_id from error_summary_new_people;

insert into error_summary (app, source, day, fingerprint, error_type, title, events, people, first_seen_at, last_seen_at)
with added as (
    select
        app,
        source,
        day,
        fingerprint,
        min(error_type) as error_type,
        min(title) as title,
        count(*) as events,
        min("timestamp") as first_seen_at,
        max("timestamp") as last_seen_at
    from error_summary_facts()
    group by app, source, day, fingerprint
),

new_people as (
    select app, source, day, fingerprint, count(*) as people
    from error_summary_new_people
    group by all
)

select
    added.app,
    added.source,
    added.day,
    added.fingerprint,
    added.error_type,
    added.title,
    added.events,
    coalesce(new_people.people, 0),
    added.first_seen_at,
    added.last_seen_at
from added
left join new_people
    on new_people.app = added.app
    and new_people.source = added.source
    and new_people.day = added.day
    and new_people.fingerprint = added.fingerprint
on conflict (app, source, day, fingerprint) do update
set error_type = least(error_type, excluded.error_type),
    title = least(title, excluded.title),
    events = events + excluded.events,
    people = people + excluded.people,
    first_seen_at = least(first_seen_at, excluded.first_seen_at),
    last_seen_at = greatest(last_seen_at, excluded.last_seen_at),
    silver_version = null;

drop table error_summary_new_people;
