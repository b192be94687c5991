-- daily_event_counts, a micro-batch that only inserted events on the refreshed days: its events are
-- added to each row's count and its people not counted yet (not in daily_event_counts_people) to the
-- row's people, so the cost follows the micro-batch, not the day. Exactly the numbers insert.sql
-- gives: events are additive and a person counts once per row. New rows start from zero.
-- Inputs: daily_event_counts_facts() over resolved_events of the inserted rows only, refresh_days.
create or replace temp table daily_event_counts_new_people as
select distinct facts.app, facts.source, facts.day, facts.event_type, facts.is_bot, facts.person_id
from daily_event_counts_facts() as facts
anti join daily_event_counts_people as state
    on state.app = facts.app
    and state.source = facts.source
    and state.day = facts.day
    and state.event_type = facts.event_type
    and state.is_bot = facts.is_bot
    and state.person_id = facts.person_id
where facts.person_id is not null;

insert into daily_event_counts_people (app, source, day, event_type, is_bot, person_id)
select app, source, day, event_type, is_bot, person_id from daily_event_counts_new_people;

insert into daily_event_counts (app, source, day, event_type, is_bot, events, people)
with added as (
    select app, source, day, event_type, is_bot, count(*) as events
    from daily_event_counts_facts()
    group by all
),

new_people as (
    select app, source, day, event_type, is_bot, count(*) as people
    from daily_event_counts_new_people
    group by all
)

select added.app, added.source, added.day, added.event_type, added.is_bot, added.events, coalesce(new_people.people, 0)
from added
left join new_people
    on new_people.app = added.app
    and new_people.source = added.source
    and new_people.day = added.day
    and new_people.event_type = added.event_type
    and new_people.is_bot = added.is_bot
on conflict (app, source, day, event_type, is_bot) do update
set events = events + excluded.events, people = people + excluded.people, silver_version = null;

drop table daily_event_counts_new_people;
