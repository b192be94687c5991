-- The rewrite of cold partition $event_date of attempt $attempt is committed (seen done, or found in
-- the table's transaction version by the next rescrub): its recorded count changes count.
update rescrub_count_changes
set committed = true
where event_date = $event_date and attempt = $attempt and not committed
