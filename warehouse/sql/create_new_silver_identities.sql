-- new_silver: the identities in the silver rows inserted since the last identity refresh, reduced while
-- the change data feed streams through (silver_feed, scanned once: a first build's feed is the whole
-- history) to one row per app, source, event day and (user id, anonymous id, session id) combination,
-- with its earliest event time (UTC) and silver version. insert_anonymous_days.sql and
-- insert_identity_links.sql read it: their days, earliest link times and link versions are the same
-- as over the rows themselves (min of mins). Rows with neither an anonymous id nor a session id
-- neither link nor count as anonymous activity, so they are left out.
create or replace temp table new_silver as
select
    app,
    source,
    event_date,
    user_id,
    anonymous_id,
    session_id,
    min("timestamp") as "timestamp",
    min(_commit_version) as _commit_version
from silver_feed
where nullif(trim(anonymous_id), '') is not null or nullif(trim(session_id), '') is not null
group by app, source, event_date, user_id, anonymous_id, session_id
