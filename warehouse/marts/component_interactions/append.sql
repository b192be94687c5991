-- component_interactions, a micro-batch that only inserted events on the refreshed days: its
-- interactions are added to each row's events and its people not counted yet (not in
-- component_interactions_people) to the row's people; exactly the numbers insert.sql gives.
-- Inputs: component_interactions_facts() over people_events of the inserted rows only, refresh_days.
create or replace temp table component_interactions_new_people as
select distinct facts.app, facts.source, facts.day, facts.page_url, facts.component, facts.interaction, facts.person_id
from component_interactions_facts() as facts
anti join component_interactions_people as state
    on state.app = facts.app
    and state.source = facts.source
    and state.day = facts.day
    and state.page_url = facts.page_url
    and state.component = facts.component
    and state.interaction = facts.interaction
    and state.person_id = facts.person_id;

insert into component_interactions_people (app, source, day, page_url, component, interaction, person_id)
select app, source, day, page_url, component, interaction, person_id from component_interactions_new_people;

insert into component_interactions (app, source, day, page_url, component, interaction, events, people)
with added as (
    select app, source, day, page_url, component, interaction, count(*) as events
    from component_interactions_facts()
    group by all
),

new_people as (
    select app, source, day, page_url, component, interaction, count(*) as people
    from component_interactions_new_people
    group by all
)

select
    added.app,
    added.source,
    added.day,
    added.page_url,
    added.component,
    added.interaction,
    added.events,
    coalesce(new_people.people, 0)
from added
left join new_people
    on new_people.app = added.app
    and new_people.source = added.source
    and new_people.day = added.day
    and new_people.page_url = added.page_url
    and new_people.component = added.component
    and new_people.interaction = added.interaction
on conflict (app, source, day, page_url, component, interaction) do update
set events = events + excluded.events, people = people + excluded.people, silver_version = null;

drop table component_interactions_new_people;
