-- component_interactions_people after a recompute of the refreshed days: exactly the people those
-- rows counted (same transaction). Inputs: component_interactions_facts(), refresh_days(app, source, day).
delete from component_interactions_people as state
using refresh_days as refresh
where state.app = refresh.app and state.source = refresh.source and state.day = refresh.day;

insert into component_interactions_people (app, source, day, page_url, component, interaction, person_id)
select distinct app, source, day, page_url, component, interaction, person_id
from component_interactions_facts();
