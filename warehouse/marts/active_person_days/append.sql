-- active_person_days, a micro-batch that only inserted events on the refreshed days: the person-days
-- it brings that are not known yet are added, and person_last_active moves to the latest of them for
-- those people (a person-day already known changes nothing: its last day is already on or after it).
-- Exactly the rows insert.sql and maintain.sql give, at the micro-batch's cost, not the day's.
-- Inputs: people_events of the inserted rows only, refresh_days(app, source, day).
create or replace temp table active_person_days_added as
select distinct people.app, people.source, people.day, people.person_id
from people_events as people
semi join refresh_days as refresh
    on refresh.app = people.app and refresh.source = people.source and refresh.day = people.day
anti join active_person_days as known
    on known.app = people.app
    and known.source = people.source
    and known.day = people.day
    and known.person_id = people.person_id;

insert into active_person_days (app, source, day, person_id)
select app, source, day, person_id from active_person_days_added;

create or replace temp table last_active_updates as
select added.app, added.source, added.person_id, max(added.day) as last_day
from active_person_days_added as added
group by all;

-- people whose stored last day is already as late keep it
delete from last_active_updates as updates
using person_last_active as state
where state.app = updates.app
    and state.source = updates.source
    and state.person_id = updates.person_id
    and state.last_day >= updates.last_day;

delete from person_last_active as state
using last_active_updates as updates
where state.app = updates.app and state.source = updates.source and state.person_id = updates.person_id;

insert into person_last_active (app, source, person_id, last_day)
select app, source, person_id, last_day from last_active_updates;

drop table last_active_updates;

drop table active_person_days_added;
