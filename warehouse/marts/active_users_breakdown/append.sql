-- active_users_breakdown, a micro-batch that only inserted events on the refreshed days: the pairs of
-- person and value not counted yet (not in active_users_breakdown_people) are added to each row's
-- active users; exactly the numbers insert.sql gives. New rows start from zero.
-- Inputs: active_users_breakdown_facts() over people_events of the inserted rows only, refresh_days.
create or replace temp table active_users_breakdown_new_people as
select facts.app, facts.source, facts.day, facts.breakdown, facts.value, facts.person_id
from active_users_breakdown_facts() as facts
anti join active_users_breakdown_people as state
    on state.app = facts.app
    and state.source = facts.source
    and state.day = facts.day
    and state.breakdown = facts.breakdown
    and state.value = facts.value
    and state.person_id = facts.person_id;

insert into active_users_breakdown_people (app, source, day, breakdown, value, person_id)
select app, source, day, breakdown, value, person_id from active_users_breakdown_new_people;

insert into active_users_breakdown (app, source, day, breakdown, value, active_users)
select app, source, day, breakdown, value, count(*) as active_users
from active_users_breakdown_new_people
group by all
on conflict (app, source, day, breakdown, value) do update
set active_users = active_users + excluded.active_users, silver_version = null;

drop table active_users_breakdown_new_people;
