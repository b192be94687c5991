-- Curated views of the serving snapshot: what analysts build charts on (Superset datasets).
-- They read only the snapshot's own tables, so the file stands alone.

-- overview_daily: DAU (with its new and returning people) next to rolling and calendar WAU and MAU per
-- app, source and day, with stickiness DAU/MAU (PostHog/Amplitude "stickiness" ratio: DAU divided by
-- rolling 30-day MAU).
create or replace view overview_daily as
select
    dau.app,
    dau.source,
    dau.day,
    dau.dau,
    dau.new_people,
    dau.returning_people,
    wau.wau_rolling_7d,
    wau.wau_calendar_week,
    mau.mau_rolling_30d,
    mau.mau_calendar_month,
    round(dau.dau / nullif(mau.mau_rolling_30d, 0), 4) as dau_mau_ratio
from daily_active_users as dau
inner join weekly_active_users as wau on wau.app = dau.app and wau.source = dau.source and wau.day = dau.day
inner join monthly_active_users as mau on mau.app = dau.app and mau.source = dau.source and mau.day = dau.day;

-- events_by_type_daily: people's events per app, source, day and event type (bots excluded).
create or replace view events_by_type_daily as
select app, source, day, event_type, events, people
from daily_event_counts
where not is_bot;

-- bot_share_daily: all events and bot events per app, source and day, and the bot share (0..1).
create or replace view bot_share_daily as
select
    app,
    source,
    day,
    sum(events) as events,
    coalesce(sum(events) filter (where is_bot), 0) as bot_events,
    round(coalesce(sum(events) filter (where is_bot), 0) / sum(events), 4) as bot_share
from daily_event_counts
group by app, source, day;

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
