-- The days of refresh_days(app, source, day) (their only change: inserted events) whose new events
-- append.sql can add to sessions: those where every person's first new event comes after the end of
-- each session of theirs on the day before, the day and the day after — events that arrive in order,
-- the hot path's usual case, so no session of theirs starts earlier or merges with a later one.
-- Inputs: people_events of the inserted rows only, sessions, refresh_days.
with firsts as (
    select events.app, events.source, events.day, events.person_id, min(events."timestamp") as first_new
    from people_events as events
    semi join refresh_days as refresh
        on refresh.app = events.app and refresh.source = events.source and refresh.day = events.day
    group by all
),

out_of_order as (
    select distinct firsts.app, firsts.source, firsts.day
    from firsts
    inner join sessions as known
        on known.app = firsts.app
        and known.source = firsts.source
        and known.person_id = firsts.person_id
        and known.day between firsts.day - 1 and firsts.day + 1
    where known.ended_at >= firsts.first_new
)

select refresh.app, refresh.source, refresh.day
from refresh_days as refresh
anti join out_of_order as late
    on late.app = refresh.app and late.source = refresh.source and late.day = refresh.day
