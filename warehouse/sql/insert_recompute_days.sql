-- Record the reporting days an erasure or a rescrub changed (recorded_days: app, source, day,
-- event_type, deleted; select_changed_event_days.sql over the changed silver rows), pending
-- (silver_version null) until tie_recompute_days.sql gives them the silver version gold recomputes them at.
insert or ignore into gold_recompute_days (request_id, app, source, day, event_type, silver_version)
select $request_id, app, source, day, event_type, null
from recorded_days
