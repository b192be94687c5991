-- daily_event_counts_people after a recompute of the refreshed days: exactly the people those rows
-- counted (same transaction). Inputs: daily_event_counts_facts(), refresh_days(app, source, day).
delete from daily_event_counts_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into daily_event_counts_people (app, source, day, event_type, is_bot, person_id)
select distinct app, source, day, event_type, is_bot, person_id
from daily_event_counts_facts()
where person_id is not null;
