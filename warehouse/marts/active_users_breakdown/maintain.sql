-- active_users_breakdown_people after a recompute of the refreshed days: exactly the people those
-- rows counted (same transaction). Inputs: active_users_breakdown_facts(), refresh_days(app, source, day).
delete from active_users_breakdown_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into active_users_breakdown_people (app, source, day, breakdown, value, person_id)
select app, source, day, breakdown, value, person_id
from active_users_breakdown_facts();
