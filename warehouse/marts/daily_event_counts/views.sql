-- Serving views over this mart, created in the serving snapshot (they read only the snapshot's tables).

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
