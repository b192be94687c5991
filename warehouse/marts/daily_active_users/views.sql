-- Serving views over this mart, created in the serving snapshot (they read only the snapshot's tables).

-- overview_daily: DAU (with its new and returning people) next to rolling and calendar WAU and MAU per
-- app, source and day, with stickiness DAU/MAU (PostHog/Amplitude "stickiness" ratio: DAU divided by
-- rolling 30-day MAU).
create or replace view overview_daily as
select
    dau.app,
    dau.source,
    dau.day,
    dau.dau,
    dau.new_people,
    dau.returning_people,
    wau.wau_rolling_7d,
    wau.wau_calendar_week,
    mau.mau_rolling_30d,
    mau.mau_calendar_month,
    round(dau.dau / nullif(mau.mau_rolling_30d, 0), 4) as dau_mau_ratio
from daily_active_users as dau
inner join weekly_active_users as wau on wau.app = dau.app and wau.source = dau.source and wau.day = dau.day
inner join monthly_active_users as mau on mau.app = dau.app and mau.source = dau.source and mau.day = dau.day;
