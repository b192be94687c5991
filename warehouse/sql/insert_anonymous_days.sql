-- anonymous_days: the days on which each anonymous id or session id was active without a user id,
-- per app and source — the days an identity merge (a new identity_links row) changes.
-- Input: new_silver (create_new_silver_identities.sql: the identities of the silver rows inserted since
-- the last identity refresh, per event day). Bots included: their rows are counted too
-- (daily_event_counts), so their merges must be applied as well.
insert or ignore into anonymous_days (app, source, alias_id, day)
select distinct app, source, anonymous_id, event_date
from new_silver
where nullif(trim(user_id), '') is null and nullif(trim(anonymous_id), '') is not null
union
select distinct app, source, session_id, event_date
from new_silver
where nullif(trim(user_id), '') is null and nullif(trim(session_id), '') is not null
