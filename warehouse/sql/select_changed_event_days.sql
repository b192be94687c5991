-- The (app, source, day, event_type) of changed silver rows (changed_rows: app, source, timestamp,
-- event_type, _change_type; inserted or deleted), `day` a calendar day of the reporting time zone
-- ($timezone, IANA); `deleted`: some of them were deleted (a reprocess, a rescrub, an erasure), not
-- only inserted. Computed once per micro-batch (pipelines.gold.MicroBatch.event_days); each mart keeps
-- the event types it reads (select_changed_days.sql).
select
    app,
    source,
    cast(timezone($timezone, "timestamp") as date) as day,
    event_type,
    bool_or(_change_type = 'delete') as deleted
from changed_rows
group by all
