-- Remove the rows of sessions that are about to be recomputed (same transaction as insert_sessions.sql).
-- A changed day loses all its sessions. A partial day (its own events unchanged, select_partial_days.sql)
-- loses only those a change next door can reach, the same ones insert_sessions.sql writes back:
--   client-session sessions (the same id may continue on the changed day);
--   when the next day changed: sessions whose last event is within $timeout_s of the day's end
--     (ended_at + timeout falls on a later reporting day): a next-day event can extend them;
--   when the day before changed: sessions starting within $timeout_s of the day's start: a session of
--     the day before can absorb them.
-- Inputs: refresh_days(app, source, day, changed, before_changed, after_changed), reporting_settings(timezone).
delete from sessions as mart
using refresh_days as refresh
where mart.app = refresh.app
    and mart.source = refresh.source
    and mart.day = refresh.day
    and (
        refresh.changed
        or mart.client_session_id is not null
        or (
            refresh.after_changed
            and cast(timezone((select timezone from reporting_settings), mart.ended_at + to_seconds($timeout_s)) as date)
            > mart.day
        )
        or (
            refresh.before_changed
            and cast(timezone((select timezone from reporting_settings), mart.started_at - to_seconds($timeout_s)) as date)
            < mart.day
        )
    )
