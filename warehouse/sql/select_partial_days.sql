-- The refresh days of a mart that refreshes partial days (sessions), marked by which of the day and its
-- neighbours changed:
--   changed: the day's own events changed (it is a changed_days row): all its rows are recomputed;
--   before_changed / after_changed: the day before / after it changed. A refresh day that did not change
--     itself (a partial day) is refreshed only where a change next door can reach: which rows those are is
--     the mart's own definition (warehouse/marts/sessions: insert.sql, delete.sql).
-- Grain: one row per refresh_days row. Inputs: refresh_days(app, source, day, window_changed), changed_days(app,
-- source, day) (select_changed_days.sql).
select
    refresh.app,
    refresh.source,
    refresh.day,
    refresh.window_changed,
    coalesce(bool_or(changed.day = refresh.day), false) as changed,
    coalesce(bool_or(changed.day = refresh.day - 1), false) as before_changed,
    coalesce(bool_or(changed.day = refresh.day + 1), false) as after_changed
from refresh_days as refresh
left join changed_days as changed
    on changed.app = refresh.app
    and changed.source = refresh.source
    and changed.day between refresh.day - 1 and refresh.day + 1
group by refresh.app, refresh.source, refresh.day, refresh.window_changed
order by refresh.app, refresh.source, refresh.day
