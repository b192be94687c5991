-- daily_page_views: page views and distinct people per app, reporting day and page URL (people only).
-- Grain: (app, source, day, page_url). Feeds "top pages".
-- Inputs: daily_page_views_facts() (macros.sql) over the refreshed days; $first_day/$last_day bound
-- the scan. A day whose only change is inserted events is not recomputed here: append.sql adds them.
insert into daily_page_views (app, source, day, page_url, views, people)
select app, source, day, page_url, count(*) as views, count(distinct person_id) as people
from daily_page_views_facts()
where day between $first_day and $last_day
group by all
