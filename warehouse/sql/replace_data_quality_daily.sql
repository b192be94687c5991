-- data_quality_daily: what became of every received event, per app and UTC day received.
-- Grain: (app, source, day, outcome, reason). outcome: 'valid' (in silver), 'quarantined' (reason = the
-- first failed check), 'duplicate' (received again after an earlier copy was kept: received minus
-- the distinct event ids kept). received = the sum over outcomes. Snowplow's "good vs bad" model.
-- Recomputed whole (one group-by over key columns of three tables) inside the caller's transaction.
-- Inputs: bronze_events, silver_events, quarantine_events (registered Delta datasets).
delete from data_quality_daily;

insert into data_quality_daily (app, source, day, outcome, reason, events)
with received as (
    select app, source, received_date as day, count(*) as events
    from bronze_events
    group by all
),

valid as (
    select app, source, cast(received_at as date) as day, 'valid' as outcome, '' as reason, count(*) as events
    from silver_events
    group by all
),

quarantined as (
    select app, source, received_date as day, 'quarantined' as outcome, reason, count(*) as events
    from quarantine_events
    group by all
),

kept as (
    select app, source, day, sum(events) as events
    from (
        select app, source, day, events from valid
        union all
        select app, source, day, events from quarantined
    )
    group by all
),

duplicates as (
    select received.app, received.source, received.day, 'duplicate' as outcome, '' as reason,
        received.events - coalesce(kept.events, 0) as events
    from received
    left join kept
        on kept.app = received.app and kept.source = received.source and kept.day = received.day
    where received.events > coalesce(kept.events, 0)
),

final as (
    select * from valid
    union all
    select * from quarantined
    union all
    select * from duplicates
)

select app, source, day, outcome, reason, events from final
