-- sessions, a micro-batch whose events all come after their people's sessions (select_appendable.sql):
-- a person's new events without a client session id continue their last such session when the first
-- comes within timeout_s of its end, and start a new session at every gap over timeout_s, as insert.sql
-- splits them; events with a client session id join that session's row, or start it. A continued
-- session keeps its key, day, start and entry page; its row is replaced. Exactly the sessions
-- insert.sql gives for the same events (but for sessions running more than 24 h, which insert.sql cuts
-- at its scan and this continues), at the micro-batch's cost, not the day's.
-- Inputs: people_events of the inserted rows only, refresh_days(app, source, day), sessions,
-- refresh_params(timeout_s).
create or replace temp table sessions_added as
select events.app, events.source, events.day, events.person_id, events.session_id, events.event_id,
    events.event_type, events."timestamp", events.page_url
from people_events as events
semi join refresh_days as refresh
    on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day;

-- what the new events may continue: each person's last session without a client id (of the day before
-- their first new day up to their last), and the sessions of the client ids they carry
create or replace temp table sessions_continued as
with people as (
    select app, source, person_id, min(day) as first_day, max(day) as last_day
    from sessions_added
    group by all
),

client_ids as (
    select app, source, person_id, session_id, min(day) as first_day, max(day) as last_day
    from sessions_added
    where session_id is not null
    group by all
),

last_visits as (
    select known.*
    from sessions as known
    inner join people
        on people.app = known.app
        and people.source = known.source
        and people.person_id = known.person_id
        and known.day between people.first_day - 1 and people.last_day
    where known.client_session_id is null
    qualify row_number() over (
        partition by known.app, known.source, known.person_id order by known.ended_at desc, known.started_at desc
    ) = 1
),

client_sessions as (
    select known.*
    from sessions as known
    inner join client_ids as ids
        on ids.app = known.app
        and ids.source = known.source
        and ids.person_id = known.person_id
        and ids.session_id = known.client_session_id
        and known.day between ids.first_day - 1 and ids.last_day
    qualify row_number() over (
        partition by known.app, known.source, known.person_id, known.client_session_id order by known.started_at
    ) = 1
)

select * from last_visits
union all
select * from client_sessions;

create or replace temp table sessions_appended as
with timeline as (
    select
        added.*,
        lag(added."timestamp") over (
            partition by added.app, added.source, added.person_id order by added."timestamp", added.event_id
        ) as previous_at
    from sessions_added as added
    where added.session_id is null
),

numbered as (
    select
        timeline.*,
        sum(
            cast(
                case
                    when timeline.previous_at is not null
                        then epoch(timeline."timestamp" - timeline.previous_at) > params.timeout_s
                    else open.ended_at is null or epoch(timeline."timestamp" - open.ended_at) > params.timeout_s
                end as integer
            )
        ) over (
            partition by timeline.app, timeline.source, timeline.person_id
            order by timeline."timestamp", timeline.event_id
            rows between unbounded preceding and current row
        ) as visit
    from timeline
    cross join refresh_params as params
    left join sessions_continued as open
        on open.app = timeline.app
        and open.source = timeline.source
        and open.person_id = timeline.person_id
        and open.client_session_id is null
),

visits as (
    -- visit 0 continues the person's last session (its first event came within the timeout)
    select
        app,
        source,
        person_id,
        null::varchar as client_session_id,
        visit = 0 as continues,
        arg_min(day, ("timestamp", event_id)) as day,
        min("timestamp") as started_at,
        max("timestamp") as ended_at,
        count(*) as events,
        count(*) filter (where event_type = 'page_view') as page_views,
        arg_min(page_url, ("timestamp", event_id)) filter (where page_url is not null) as entry_page,
        arg_max(page_url, ("timestamp", event_id)) filter (where page_url is not null) as exit_page
    from numbered
    group by app, source, person_id, visit
    union all
    select
        app,
        source,
        person_id,
        session_id as client_session_id,
        true as continues,
        arg_min(day, ("timestamp", event_id)) as day,
        min("timestamp") as started_at,
        max("timestamp") as ended_at,
        count(*) as events,
        count(*) filter (where event_type = 'page_view') as page_views,
        arg_min(page_url, ("timestamp", event_id)) filter (where page_url is not null) as entry_page,
        arg_max(page_url, ("timestamp", event_id)) filter (where page_url is not null) as exit_page
    from sessions_added
    where session_id is not null
    group by app, source, person_id, session_id
)

select
    visits.app,
    visits.source,
    coalesce(open.day, visits.day) as day,
    coalesce(
        open.session_key,
        md5(
            concat_ws(
                chr(31), visits.app, visits.source, visits.person_id,
                coalesce('client:' || visits.client_session_id, 'start:' || cast(epoch_us(visits.started_at) as varchar))
            )
        )
    ) as session_key,
    visits.person_id,
    visits.client_session_id,
    coalesce(open.started_at, visits.started_at) as started_at,
    visits.ended_at,
    epoch(visits.ended_at - coalesce(open.started_at, visits.started_at)) as duration_s,
    coalesce(open.events, 0) + visits.events as events,
    coalesce(open.page_views, 0) + visits.page_views as page_views,
    coalesce(open.entry_page, visits.entry_page) as entry_page,
    coalesce(visits.exit_page, open.exit_page) as exit_page,
    open.day as continued_day,
    open.session_key as continued_key
from visits
left join sessions_continued as open
    on visits.continues
    and open.app = visits.app
    and open.source = visits.source
    and open.person_id = visits.person_id
    and open.client_session_id is not distinct from visits.client_session_id;

delete from sessions as known
using sessions_appended as appended
where known.app = appended.app
    and known.source = appended.source
    and known.day = appended.continued_day
    and known.session_key = appended.continued_key;

insert into sessions (
    app, source, day, session_key, person_id, client_session_id, started_at, ended_at, duration_s, events, page_views,
    entry_page, exit_page
)
select
    app, source, day, session_key, person_id, client_session_id, started_at, ended_at, duration_s, events, page_views,
    entry_page, exit_page
from sessions_appended;

drop table sessions_appended;

drop table sessions_continued;

drop table sessions_added;
