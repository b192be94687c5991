-- Remove the rows of sessions that are about to be recomputed (same transaction as insert.sql): every
-- session of a changed day, and on a partial day those a change next door can reach — the ones insert.sql
-- writes back (macros.sql's reached_next_door, one definition for both).
-- Inputs: refresh_days(app, source, day, changed, before_changed, after_changed), reporting_settings(timezone).
delete from sessions as mart
using refresh_days as refresh
where mart.app = refresh.app
    and mart.source = refresh.source
    and mart.day = refresh.day
    and reached_next_door(
        refresh.changed,
        refresh.before_changed,
        refresh.after_changed,
        mart.client_session_id,
        mart.started_at,
        mart.ended_at,
        mart.day,
        $timeout_s
    )
