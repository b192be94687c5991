-- daily_page_views, a micro-batch that only inserted events on the refreshed days: its page views are
-- added to each row's views and its people not counted yet (not in daily_page_views_people) to the
-- row's people; exactly the numbers insert.sql gives. New rows start from zero.
-- Inputs: daily_page_views_facts() over resolved_events of the inserted rows only, refresh_days.
create or replace temp table daily_page_views_new_people as
select distinct facts.app, facts.source, facts.day, facts.page_url, facts.person_id
from daily_page_views_facts() as facts
anti join daily_page_views_people as state
    on state.app = facts.app
    and state.source = facts.source
    and state.day = facts.day
    and state.page_url = facts.page_url
    and state.person_id = facts.person_id
where facts.person_id is not null;

insert into daily_page_views_people (app, source, day, page_url, person_id)
select app, source, day, page_url, person_id from daily_page_views_new_people;

insert into daily_page_views (app, source, day, page_url, views, people)
with added as (
    select app, source, day, page_url, count(*) as views
    from daily_page_views_facts()
    group by all
),

new_people as (
    select app, source, day, page_url, count(*) as people
    from daily_page_views_new_people
    group by all
)

select added.app, added.source, added.day, added.page_url, added.views, coalesce(new_people.people, 0)
from added
left join new_people
    on new_people.app = added.app
    and new_people.source = added.source
    and new_people.day = added.day
    and new_people.page_url = added.page_url
on conflict (app, source, day, page_url) do update
set views = views + excluded.views, people = people + excluded.people, silver_version = null;

drop table daily_page_views_new_people;
