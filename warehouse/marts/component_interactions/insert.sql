-- component_interactions: how people use each UI component, per app, reporting day, page and interaction.
-- Grain: (app, source, day, page_url, component, interaction): events and distinct people (what an
-- interaction is: component_interactions_facts() in macros.sql).
-- Source of the formula: autocapture element stats as in PostHog's heatmaps/"clickmaps" and
-- Snowplow's link/element click tracking — counts and unique users per element and page.
-- Inputs: component_interactions_facts() over the refreshed days; $first_day/$last_day bound the
-- scan. A day whose only change is inserted events is not recomputed here: append.sql adds them.
insert into component_interactions (app, source, day, page_url, component, interaction, events, people)
select app, source, day, page_url, component, interaction, count(*) as events, count(distinct person_id) as people
from component_interactions_facts()
where day between $first_day and $last_day
group by all
