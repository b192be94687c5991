-- daily_sessions: sessions per app, source and reporting day started, with the bounce rate (share of
-- sessions with at most one page view, Google Analytics' classic definition), the median session
-- length in seconds and the mean events per session.
-- Grain: (app, source, day); days without sessions have no row.
-- Inputs: the gold table sessions (refreshed first, for the same days), refresh_days(app, source, day).
insert into daily_sessions (app, source, day, sessions, bounce_rate, median_duration_s, events_per_session)
select
    visits.app,
    visits.source,
    visits.day,
    count(*) as sessions,
    round(count(*) filter (where visits.page_views <= 1) / count(*), 4) as bounce_rate,
    median(visits.duration_s) as median_duration_s,
    round(avg(visits.events), 2) as events_per_session
from sessions as visits
inner join refresh_days as refresh
    on refresh.app = visits.app and refresh.source = visits.source and refresh.day = visits.day
where visits.day between $first_day and $last_day
group by visits.app, visits.source, visits.day
