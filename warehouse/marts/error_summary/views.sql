-- Serving views over this mart, created in the serving snapshot (they read only the snapshot's tables).

-- error_groups: each error group (error_summary's fingerprint) over all days per app and source: first
-- and last seen (UTC), events, days seen and the most people it reached on one day.
create or replace view error_groups as
select
    app,
    source,
    fingerprint,
    min(error_type) as error_type,
    min(title) as title,
    cast(sum(events) as bigint) as events,
    count(*) as days_seen,
    max(people) as max_daily_people,
    min(first_seen_at) as first_seen_at,
    max(last_seen_at) as last_seen_at
from error_summary
group by app, source, fingerprint;
