-- error_summary_people after a recompute of the refreshed days: exactly the people those rows counted
-- (same transaction). Inputs: error_summary_facts(), refresh_days(app, source, day).
delete from error_summary_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into error_summary_people (app, source, day, fingerprint, person_id)
select distinct app, source, day, fingerprint, person_id
from error_summary_facts();
