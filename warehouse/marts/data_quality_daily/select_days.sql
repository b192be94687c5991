-- The (app, source, received day) triples of data_quality_daily to recompute: the UTC received days of
-- the rows that bronze, silver and quarantine inserted or deleted since the mart's watermark, plus the
-- received days of quarantined copies whose event_id silver just inserted or deleted (a quarantined copy
-- counts as a duplicate once its event is in silver, replace_data_quality_daily.sql).
-- Inputs: bronze_counts(app, source, received_date, events) (bronze's change data feed counted per
-- received day, select_bronze_counts.sql), silver_changes(app, source, received_at, event_id)
-- (change data feeds), quarantine_changed_days(day) (the received_date partitions the quarantine added
-- or removed files in; it has no change data feed) and quarantine_ids(app, source, received_date,
-- event_id) (the whole quarantine table, which holds only rejected rows).
with silver_changed as materialized (
    -- One pass over silver's change feed (streamed, so read once: a rebuild's feed is the whole
    -- history): its received days, and which changed events have a quarantined copy.
    select distinct
        app,
        source,
        cast(received_at as date) as day,
        case when event_id in (select event_id from quarantine_ids) then event_id end as quarantined_event_id
    from silver_changes
),

days as (
    select app, source, received_date as day from bronze_counts
    union all
    select app, source, day from silver_changed
    union all
    select app, source, received_date as day
    from quarantine_ids
    where received_date in (select day from quarantine_changed_days)
    union all
    select quarantined.app, quarantined.source, quarantined.received_date as day
    from quarantine_ids as quarantined
    semi join silver_changed as changed on changed.quarantined_event_id = quarantined.event_id
)

select distinct app, source, day from days where day is not null order by app, source, day
