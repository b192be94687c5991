-- The (app, source, day, event_type) of changed silver rows (changed_rows: app, source, timestamp,
-- event_type; inserted or deleted), `day` a calendar day of the reporting time zone ($timezone,
-- IANA). Computed once per micro-batch (pipelines.gold.MicroBatch.event_days); each mart keeps the
-- event types it reads (select_changed_days.sql).
select distinct app, source, cast(timezone($timezone, "timestamp") as date) as day, event_type
from changed_rows
