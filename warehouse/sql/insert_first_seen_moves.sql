-- Record the first_seen each earlier candidate replaces (first_seen_candidates vs person_first_seen):
-- the day of the old value loses a new person, so every mart rewrites it.
insert into first_seen_moves (app, source, person_id, previous_first_seen, silver_version)
select seen.app, seen.source, seen.person_id, seen.first_seen, $silver_version
from first_seen_candidates as candidate
inner join person_first_seen as seen
    on seen.app = candidate.app and seen.source = candidate.source and seen.person_id = candidate.person_id
where candidate.first_seen < seen.first_seen
