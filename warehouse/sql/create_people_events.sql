-- people_events: the activity that people metrics count, defined once for every mart.
-- Person key: user_id, else anonymous_id, else session_id (an anonymous visitor); bot/crawler traffic is excluded
-- (it stays in silver). Input: view silver_events. Filters on `day` push down to the partitions.
create or replace temp view people_events as
select
    app,
    source,
    event_date as day,
    coalesce(user_id, anonymous_id, session_id) as person_id,
    event_type,
    "timestamp",
    page_url,
    properties
from silver_events
where not is_bot and coalesce(user_id, anonymous_id, session_id) is not null
