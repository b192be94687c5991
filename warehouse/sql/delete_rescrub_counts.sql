-- The rewrite of cold partition $event_date of attempt $attempt was never committed (the table's
-- transaction version did not reach it): its recorded count changes go.
delete from rescrub_count_changes
where event_date = $event_date and attempt = $attempt and not committed
