-- Record, for each rechecked first_seen that changed (first_seen_rechecked), both its days: the old
-- one loses a new person, the new one (if any) gains one; every mart counting new people rewrites them.
insert into first_seen_moves (app, source, person_id, previous_first_seen, silver_version)
select app, source, person_id, previous_first_seen, $silver_version
from first_seen_rechecked
where first_seen is distinct from previous_first_seen
union all
select app, source, person_id, first_seen, $silver_version
from first_seen_rechecked
where first_seen is not null and first_seen <> previous_first_seen
