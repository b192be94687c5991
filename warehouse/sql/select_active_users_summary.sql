-- Per app and source: the last day with data, DAU that day, average DAU over all days, rolling and
-- calendar MAU on that day. Used by `eventlake-status` after a run.
with latest as (
    select app, source, max(day) as last_day, count(*) as days, avg(dau) as avg_dau
    from daily_active_users
    group by app, source
),

final as (
    select
        latest.app,
        latest.source,
        latest.days,
        latest.last_day,
        dau.dau as dau_last_day,
        round(latest.avg_dau, 1) as avg_dau,
        mau.mau_rolling_30d,
        mau.mau_calendar_month
    from latest
    inner join daily_active_users as dau on dau.app = latest.app and dau.source = latest.source and dau.day = latest.last_day
    inner join monthly_active_users as mau on mau.app = latest.app and mau.source = latest.source and mau.day = latest.last_day
)

select * from final order by app, source
