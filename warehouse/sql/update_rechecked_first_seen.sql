-- Store the rechecked first_seen values that changed (first_seen_rechecked): a later one replaces the
-- stored value (the earlier was a static-asset request), and a person with no counted activity goes.
delete from person_first_seen as seen
using first_seen_rechecked as recheck
where
    recheck.app = seen.app
    and recheck.source = seen.source
    and recheck.person_id = seen.person_id
    and recheck.first_seen is distinct from recheck.previous_first_seen;

insert into person_first_seen (app, source, person_id, first_seen, silver_version)
select app, source, person_id, first_seen, $silver_version
from first_seen_rechecked
where first_seen is not null and first_seen <> previous_first_seen
