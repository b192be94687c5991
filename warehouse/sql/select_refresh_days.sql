-- Days of a gold mart to recompute after silver changed.
-- Grain: one row per (app, source, day), days of the reporting time zone. Inputs: changed_days(app,
-- source, day): the reporting days of new silver rows and identity merges (select_changed_days.sql),
-- and the mart itself. An (app, source)'s days run from the first to the last day of the mart's rows
-- and the changed days (all of silver's days on a first build, when every day is changed; for marts
-- that are not dense, to the end of the changed days' trailing windows), so the
-- cost follows the new data and the mart, never a scan of silver's history.
-- A day is refreshed when a changed day falls in its trailing window of $window_days days
-- (1 for DAU, 30 for rolling MAU) or up to $lookback_days after it (funnels: a day's events can
-- complete attempts entered that many days before), when it shares a calendar month with a
-- changed day and $whole_month is true, or an ISO week with one of those days and $whole_week is
-- true (weekly rows are keyed by the week's Monday, so the spine starts on a Monday then), or —
-- for dense marts ($fill_spine: one row per day, idle days included) — when the mart has no row
-- for it yet (the day spine grew).
-- window_changed: a changed day falls in the day's own trailing window (or the day is new to the mart);
-- false for days refreshed only for their calendar week or month, whose rolling values cannot have
-- changed (the WAU/MAU SQL keeps those from the mart's previous rows).
-- {gold_table} is a whitelisted identifier formatted in by warehouse.gold.
with known_days as (
    select app, source, day from changed_days
    union all
    select app, source, day from {gold_table}
    union all
    -- the days a changed day's trailing windows reach, also past the mart's last row (a deleted event
    -- splits a session crossing midnight: its next day, which had no row yet, gains one); dense marts
    -- ($fill_spine) stop at their data, or they would get rows for days to come
    select app, source, day + ($window_days - 1) from changed_days where not $fill_spine
    union all
    -- a calendar period's rows (active_person_weeks: keyed by the week's Monday) are computed from the
    -- whole period, so its days run to the period's end, past the mart's last row too (else a week
    -- refreshed for its Monday alone would lose the people of its later days); dense marts stop at
    -- their data, or they would get rows for days to come
    select app, source, cast(date_trunc('week', day) + interval 6 day as date)
    from changed_days
    where $whole_week and not $fill_spine
    union all
    select app, source, last_day(day) from changed_days where $whole_month and not $fill_spine
),

bounds as (
    select app, source, min(day) as first_day, max(day) as last_day
    from known_days
    group by app, source
),

spine as (
    select bounds.app, bounds.source, cast(series.ts as date) as day
    from bounds, range(
        case when $whole_week then cast(date_trunc('week', bounds.first_day) as date) else bounds.first_day end,
        bounds.last_day + 1,
        interval 1 day
    ) as series (ts)
),

touched as (
    select
        spine.app,
        spine.source,
        spine.day,
        bool_or(spine.day between changed.day and changed.day + ($window_days - 1)) as window_changed
    from spine
    inner join changed_days as changed
        on changed.app = spine.app
        and changed.source = spine.source
        and (
            spine.day between changed.day - $lookback_days and changed.day + ($window_days - 1)
            or ($whole_month and date_trunc('month', spine.day) = date_trunc('month', changed.day))
            or (
                $whole_week
                and date_trunc('week', spine.day)
                between date_trunc('week', changed.day - $lookback_days) and date_trunc('week', changed.day)
            )
        )
    group by spine.app, spine.source, spine.day
),

missing as (
    select spine.app, spine.source, spine.day, true as window_changed
    from spine
    anti join {gold_table} as mart
        on mart.app = spine.app and mart.source = spine.source and mart.day = spine.day
    where $fill_spine
),

final as (
    select app, source, day, bool_or(window_changed) as window_changed
    from (
        select app, source, day, window_changed from touched
        union all
        select app, source, day, window_changed from missing
    )
    group by app, source, day
)

select app, source, day, window_changed from final order by app, source, day
