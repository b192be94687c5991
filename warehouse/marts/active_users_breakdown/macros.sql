-- active_users_breakdown_facts(): one row per person, refreshed day, breakdown and value (see
-- insert.sql for the definition), each pair once. One definition for insert.sql, maintain.sql and
-- append.sql. Inputs: people_events (bots excluded), user_attributes(app, user_id, attribute, value,
-- valid_from, valid_to; app null = every app), refresh_days(app, source, day).
create or replace temp macro active_users_breakdown_facts() as table
with day_events as (
    select
        people.app,
        people.source,
        people.day,
        people.person_id,
        people."timestamp",
        people.platform,
        people.device_type,
        people.country,
        people.browser_family,
        people.os_family
    from people_events as people
    inner join refresh_days as refresh
        on refresh.app = people.app
        and refresh.source = people.source
        and refresh.day = people.day
),

event_dimensions as (
    -- SQL-standard UNPIVOT: one row per event and dimension; what enrichment could not tell (no user
    -- agent, no location and a private or unallocated address) is '(unknown)'
    select app, source, day, person_id, breakdown, coalesce(value, '(unknown)') as value
    from day_events
    unpivot include nulls (value for breakdown in (platform, device_type, country, browser_family, os_family))
),

attribute_names as (
    select distinct app, attribute from user_attributes
),

event_attributes as (
    select
        events.app,
        events.source,
        events.day,
        events.person_id,
        'user.' || names.attribute as breakdown,
        versions.value
    from day_events as events
    inner join attribute_names as names
        on names.app is null or names.app = events.app
    left join user_attributes as versions
        on versions.attribute = names.attribute
        and versions.user_id = events.person_id
        and (versions.app is null or versions.app = events.app)
        and (versions.valid_from is null or events."timestamp" >= versions.valid_from)
        and (versions.valid_to is null or events."timestamp" < versions.valid_to)
)

-- a person without a version of an attribute valid then has '(none)'
select distinct app, source, day, breakdown, coalesce(value, '(none)') as value, person_id
from (
    select app, source, day, person_id, breakdown, value from event_dimensions
    union all
    select app, source, day, person_id, breakdown, value from event_attributes
);
