-- The first_seen of each person rechecked (first_seen_rechecks: app, source, person_id,
-- previous_first_seen), from silver as it is (people_events over both tiers): their earliest
-- counted activity, null when they have none (they only ever requested static assets).
select
    recheck.app,
    recheck.source,
    recheck.person_id,
    recheck.previous_first_seen,
    min(activity."timestamp") as first_seen
from first_seen_rechecks as recheck
left join people_events as activity
    on activity.app = recheck.app and activity.source = recheck.source and activity.person_id = recheck.person_id
group by all
