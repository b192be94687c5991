-- active_users_breakdown: daily active people per app and reporting day, broken down by a dimension.
-- Definition: `breakdown` names the dimension and `value` its value on the person's events that day:
--   platform, device_type, country, browser_family, os_family — silver's enrichment of each event
--     (pipelines/enrichment.py: SDK context, else user agent; pipelines/geo.py: the client's location,
--     else its IP network's country);
--   user.<attribute> — an attribute of the users source (warehouse/users.py) valid at the event's
--     time: the version with valid_from <= timestamp < valid_to (slowly changing dimension, type 2),
--     for the apps the users source covers.
-- A person counts once per value they had that day: someone on two platforms in one day counts under
-- both, so a breakdown's values add up to DAU or more (each is a DAU of its own). An enrichment
-- dimension enrichment could not tell (no user agent; no location and a private or unallocated IP)
-- counts as '(unknown)', a person without an attribute version valid then as '(none)'.
-- Grain: (app, source, day, breakdown, value): active_users.
-- Source of the formula: PostHog trends' "breakdown by property" (unique users per breakdown value),
-- Amplitude's "group by user property" with the property's value at event time.
-- Inputs: active_users_breakdown_facts() (macros.sql: the pairs of person and value) over the refreshed
-- days; $first_day/$last_day bound the scan. A day whose only change is inserted events is not
-- recomputed here: append.sql adds its new people.
insert into active_users_breakdown (app, source, day, breakdown, value, active_users)
select app, source, day, breakdown, value, count(*) as active_users
from active_users_breakdown_facts()
where day between $first_day and $last_day
group by all
