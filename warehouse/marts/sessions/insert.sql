-- sessions: one row per visit, per app and source, keyed by the reporting day it started (Snowplow's
-- sessions model; Google Analytics' session definition).
-- Definition: a person's events that carry a client session id form one session per id. Events
-- without one are split by inactivity: a gap of more than $timeout_s seconds between a person's
-- consecutive such events starts a new session (Google Analytics / Snowplow: 30 minutes, the
-- setting EVENTLAKE_SESSION_TIMEOUT_MINUTES). People are identity-stitched (people_events), bots excluded.
--   session_key        md5 of app, source, person and the client session id, else the start time (µs);
--   started_at/ended_at  first and last event (UTC); duration_s the difference (0 for one event);
--   events, page_views  counts; entry_page/exit_page  page_url of the first/last event with a page.
-- Grain: (app, source, day, session_key), day = reporting day of started_at; person_id the person's
-- (person-level: the table is not served, daily_sessions is).
-- Incremental: a changed day D refreshes D - 1 .. D + 1 (a session may cross midnight into D, and a
-- new event on D can merge D's last session with one starting after midnight); the scan reaches one
-- day further each way. A session running more than 24 h past the scanned days is cut there.
-- D - 1 and D + 1, when their own events did not change (partial days), keep every session a change
-- on D cannot reach; only the others are recomputed (delete.sql removes the same set):
-- client-session sessions; sessions whose last event is within $timeout_s of the day's end when the
-- next day changed; sessions starting within $timeout_s of the day's start when the day before
-- changed. Whether a session is one of these depends only on its own day's events (its start and
-- last event that day), which did not change, so the rows removed and written back are the same
-- sessions. Events read: every event of changed days; on the other scanned days only client-session
-- events and the people with an event there within $timeout_s of a changed day next door
-- (edge_people): no one else's sessions can cross into or out of a changed day.
-- Inputs: people_events, changed_days(app, source, day), refresh_days(app, source, day, changed,
-- before_changed, after_changed) (select_partial_days.sql), reporting_settings(timezone);
-- $first_day/$last_day bound the scan.
insert into sessions (
    app, source, day, session_key, person_id, client_session_id, started_at, ended_at, duration_s, events, page_views,
    entry_page, exit_page
)
with scanned as (
    select app, source, day, person_id, session_id, event_id, event_type, "timestamp", page_url
    from people_events
    where day between $first_day and $last_day
),

edge_people as (
    select distinct scanned.app, scanned.source, scanned.person_id
    from scanned
    inner join changed_days as changed
        on changed.app = scanned.app
        and changed.source = scanned.source
        and changed.day in (scanned.day - 1, scanned.day + 1)
    anti join changed_days as own
        on own.app = scanned.app and own.source = scanned.source and own.day = scanned.day
    where scanned.session_id is null
        and (
            (
                changed.day = scanned.day + 1
                and cast(timezone((select timezone from reporting_settings), scanned."timestamp" + to_seconds($timeout_s)) as date)
                > scanned.day
            )
            or (
                changed.day = scanned.day - 1
                and cast(timezone((select timezone from reporting_settings), scanned."timestamp" - to_seconds($timeout_s)) as date)
                < scanned.day
            )
        )
),

scoped as (
    select scanned.*
    from scanned
    left join changed_days as changed
        on changed.app = scanned.app and changed.source = scanned.source and changed.day = scanned.day
    left join edge_people as edge
        on edge.app = scanned.app and edge.source = scanned.source and edge.person_id = scanned.person_id
    where changed.day is not null or scanned.session_id is not null or edge.person_id is not null
),

gaps as (
    select
        *,
        session_id is null
        and (
            lag("timestamp") over person_timeline is null
            or epoch("timestamp" - lag("timestamp") over person_timeline) > $timeout_s
        ) as starts_visit
    from scoped
    window person_timeline as (
        partition by app, source, person_id, session_id is null order by "timestamp", event_id
    )
),

numbered as (
    select
        *,
        sum(cast(starts_visit as integer)) over (
            partition by app, source, person_id, session_id is null
            order by "timestamp", event_id
            rows between unbounded preceding and current row
        ) as visit
    from gaps
),

visits as (
    select
        app,
        source,
        person_id,
        session_id as client_session_id,
        arg_min(day, ("timestamp", event_id)) as day,
        min("timestamp") as started_at,
        max("timestamp") as ended_at,
        count(*) as events,
        count(*) filter (where event_type = 'page_view') as page_views,
        arg_min(page_url, ("timestamp", event_id)) filter (where page_url is not null) as entry_page,
        arg_max(page_url, ("timestamp", event_id)) filter (where page_url is not null) as exit_page
    from numbered
    group by app, source, person_id, session_id, case when session_id is null then visit end
),

final as (
    select
        visits.app,
        visits.source,
        visits.day,
        md5(
            concat_ws(
                chr(31), visits.app, visits.source, visits.person_id,
                coalesce('client:' || visits.client_session_id, 'start:' || cast(epoch_us(visits.started_at) as varchar))
            )
        ) as session_key,
        visits.person_id,
        visits.client_session_id,
        visits.started_at,
        visits.ended_at,
        epoch(visits.ended_at - visits.started_at) as duration_s,
        visits.events,
        visits.page_views,
        visits.entry_page,
        visits.exit_page
    from visits
    inner join refresh_days as refresh
        on refresh.app = visits.app
        and refresh.source = visits.source
        and refresh.day = visits.day
    -- on a partial day, only the sessions delete.sql removed (macros.sql: one definition for both)
    where reached_next_door(
        refresh.changed,
        refresh.before_changed,
        refresh.after_changed,
        visits.client_session_id,
        visits.started_at,
        visits.ended_at,
        visits.day,
        $timeout_s
    )
)

select
    app, source, day, session_key, person_id, client_session_id, started_at, ended_at, duration_s, events, page_views,
    entry_page, exit_page
from final
