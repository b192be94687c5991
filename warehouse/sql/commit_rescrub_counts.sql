-- The rewrite of cold partition $event_date by rescrub $request_id is committed: its recorded count
-- changes (insert_rescrub_counts.sql) count from now on.
update rescrub_count_changes
set committed = true
where request_id = $request_id and event_date = $event_date and not committed
