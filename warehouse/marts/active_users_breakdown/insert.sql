-- active_users_breakdown: daily active people per app and reporting day, broken down by a dimension.
-- Definition: `breakdown` names the dimension and `value` its value on the person's events that day:
--   platform, device_type, country, browser_family, os_family — silver's enrichment of each event
--     (pipelines/enrichment.py: SDK context, else user agent; the client's location);
--   user.<attribute> — an attribute of the users source (warehouse/users.py) valid at the event's
--     time: the version with valid_from <= timestamp < valid_to (slowly changing dimension, type 2),
--     for the apps the users source covers.
-- A person counts once per value they had that day: someone on two platforms in one day counts under
-- both, so a breakdown's values add up to DAU or more (each is a DAU of its own). No value (no user
-- agent, no location, no attribute version valid then) counts as '(none)'.
-- Grain: (app, source, day, breakdown, value): active_users.
-- Source of the formula: PostHog trends' "breakdown by property" (unique users per breakdown value),
-- Amplitude's "group by user property" with the property's value at event time.
-- Inputs: people_events (bots excluded), user_attributes(app, user_id, attribute, value, valid_from,
-- valid_to; app null = every app), refresh_days(app, source, day); $first_day/$last_day bound the scan.
insert into active_users_breakdown (app, source, day, breakdown, value, active_users)
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
    where people.day between $first_day and $last_day
),

event_dimensions as (
    -- SQL-standard UNPIVOT: one row per event and dimension, unknown values kept as null
    select app, source, day, person_id, breakdown, value
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
),

final as (
    select app, source, day, breakdown, coalesce(value, '(none)') as value, count(distinct person_id) as active_users
    from (
        select app, source, day, person_id, breakdown, value from event_dimensions
        union all
        select app, source, day, person_id, breakdown, value from event_attributes
    )
    group by all
)

select app, source, day, breakdown, value, active_users from final
