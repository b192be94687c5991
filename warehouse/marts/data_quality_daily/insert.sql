-- data_quality_daily: what became of every received event, per app and UTC day received.
-- Grain: (app, source, day, outcome, reason). outcome:
--   'valid'       in silver and counted in people metrics;
--   'bot'         in silver but flagged as a bot or crawler (kept, excluded from people metrics);
--   'asset'       in silver, a static-asset request (silver.is_asset; kept, excluded from every other
--                 mart: not a page view, session or person's activity);
--   'quarantined' still in quarantine: reason = the first failed check, reason_type its typed reason
--                 (a copy whose event reached silver later, by replay, reprocess or a retry,
--                 counts as valid/bot or duplicate instead);
--   'duplicate'   received again after an earlier copy was kept (received minus the copies kept).
-- received = the sum over outcomes. Snowplow's "good vs bad" model
-- (https://docs.snowplow.io/docs/fundamentals/failed-events/). It is the analysts' view of the
-- quarantine: reasons and counts, never payloads.
-- Incremental by received day: the rows of the days in quality_days(app, source, day)
-- (select_days.sql), just deleted by delete.sql, are recomputed in the caller's transaction.
-- received: what those rows summed to before (received_before: app, source, day, events; from
-- select_received.sql, empty on a rebuild) plus bronze's rows added since the watermark, less those
-- removed (bronze_counts: app, source, received_date, events, from its change data feed); valid and bot
-- likewise (kept_before: app, source, day, outcome, events, select_kept.sql; silver_counts: the same
-- from silver's change data feed, select_silver_counts.sql), so neither bronze nor silver is re-read:
-- a received day holds a file per group commit and every micro-batch since midnight.
-- Inputs: quarantine_events (the Delta dataset narrowed to those days' partitions; filtered exactly
-- here), silver_event_ids (all of silver, probed only for the quarantined rows of those days),
-- received_before, bronze_counts, kept_before, silver_counts and quality_days.
insert into data_quality_daily (app, source, day, outcome, reason, reason_type, events)
with received as (
    select app, source, day, sum(events) as events
    from (
        select app, source, day, events from received_before
        union all
        select app, source, received_date as day, events from bronze_counts
    ) as counts
    semi join quality_days as changed
        on changed.app = counts.app and changed.source = counts.source and changed.day = counts.day
    group by all
),

valid as (
    -- the counts before (kept_before) plus silver's rows added and less those removed since
    select app, source, day, outcome, '' as reason, '' as reason_type, cast(sum(events) as bigint) as events
    from (
        select app, source, day, outcome, events from kept_before
        union all
        select app, source, day, outcome, events from silver_counts
    ) as counts
    semi join quality_days as changed
        on changed.app = counts.app and changed.source = counts.source and changed.day = counts.day
    group by all
    having sum(events) > 0
),

quarantined as (
    select app, source, received_date as day, 'quarantined' as outcome, reason, reason_type, count(*) as events
    from quarantine_events as q
    semi join quality_days as changed
        on changed.app = q.app and changed.source = q.source and changed.day = q.received_date
    -- A quarantined copy whose event is in silver by now (replayed, reprocessed, or a later retry
    -- that passed) is no longer an open failure: it counts as a duplicate of the copy kept.
    -- Conflicting copies stay quarantined: their event is in silver by definition.
    where q.reason_type = 'duplicate_conflict'
        or not exists (select 1 from silver_event_ids as s where s.event_id = q.event_id)
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
    select
        received.app,
        received.source,
        received.day,
        'duplicate' as outcome,
        '' as reason,
        '' as reason_type,
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

select app, source, day, outcome, reason, reason_type, events from final
