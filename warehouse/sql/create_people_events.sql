-- resolved_events: silver rows with their reporting day and person. `day` is the calendar day of the
-- event in the reporting time zone (reporting_settings.timezone, an IANA name; DST-correct through
-- DuckDB's ICU time zones), a DATE. Person (identity stitching, pipelines/identity.py):
-- person_id = user_id, else the person the anonymous id is linked to, else the person the session
-- id is linked to, else the anonymous id, else the session id (an anonymous visitor). A blank or
-- whitespace-only id is no id (a client sending "" must not make strangers one person).
-- Static-asset requests (silver.is_asset: a page_view of a .css, .png, … file) are no activity of
-- anyone's: they stay in silver, counted by the data quality mart only, and no mart sees them here
-- (null: a row from before the flag, until the rescrub fills it in).
-- people_events: the activity that people metrics count, defined once for every mart: resolved
-- events with a person, bot/crawler traffic excluded (it stays in silver).
-- Inputs: view silver_events (pipelines.gold registers only the partitions a refresh reads), tables
-- identity_links and reporting_settings(timezone).
create or replace temp view resolved_events as
select
    silver.app,
    silver.source,
    cast(timezone((select timezone from reporting_settings), silver."timestamp") as date) as day,
    coalesce(
        nullif(trim(silver.user_id), ''),
        by_anonymous_id.person_id,
        by_session_id.person_id,
        nullif(trim(silver.anonymous_id), ''),
        nullif(trim(silver.session_id), '')
    ) as person_id,
    silver.event_type,
    silver."timestamp",
    silver.page_url,
    silver.properties,
    nullif(trim(silver.session_id), '') as session_id,
    silver.event_id,
    silver.platform,
    silver.device_type,
    silver.country,
    silver.browser_family,
    silver.os_family,
    silver.is_bot
from silver_events as silver
left join identity_links as by_anonymous_id
    on by_anonymous_id.app = silver.app and by_anonymous_id.alias_id = silver.anonymous_id
left join identity_links as by_session_id
    on by_session_id.app = silver.app and by_session_id.alias_id = silver.session_id
where not coalesce(silver.is_asset, false);

create or replace temp view people_events as
select
    app,
    source,
    day,
    person_id,
    event_type,
    "timestamp",
    page_url,
    properties,
    session_id,
    event_id,
    platform,
    device_type,
    country,
    browser_family,
    os_family
from resolved_events
where not is_bot and person_id is not null;
