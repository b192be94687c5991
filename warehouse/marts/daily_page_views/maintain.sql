-- daily_page_views_people after a recompute of the refreshed days: exactly the people those rows
-- counted (same transaction). Inputs: daily_page_views_facts(), refresh_days(app, source, day).
delete from daily_page_views_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into daily_page_views_people (app, source, day, page_url, person_id)
select distinct app, source, day, page_url, person_id
from daily_page_views_facts()
where person_id is not null;
