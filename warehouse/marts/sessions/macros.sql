-- reached_next_door: whether a session of a refresh day is one the refresh rewrites — every session of a
-- changed day; on a partial day (its own events unchanged, select_partial_days.sql) only those a change
-- next door can reach: client-session sessions (the same id may continue on the changed day); when the
-- next day changed, sessions whose last event is within timeout_s (seconds) of the day's end (ended_at +
-- timeout falls on a later reporting day): a next-day event can extend them; when the day before changed,
-- sessions starting within timeout_s of the day's start: a session of the day before can absorb them.
-- One definition for delete.sql (what a refresh removes) and insert.sql (what it writes back).
-- Inputs: reporting_settings(timezone).
create or replace temp macro reached_next_door(
    changed, before_changed, after_changed, client_session_id, started_at, ended_at, day, timeout_s
) as
    changed
    or client_session_id is not null
    or (
        after_changed
        and cast(timezone((select timezone from reporting_settings), ended_at + to_seconds(timeout_s)) as date) > day
    )
    or (
        before_changed
        and cast(timezone((select timezone from reporting_settings), started_at - to_seconds(timeout_s)) as date) < day
    );
