-- previous_rows: the rows of {gold_table} on the days about to be refreshed, as they were before the
-- refresh (taken before delete_refresh_days.sql runs). WAU/MAU keep the rolling counts of days refreshed
-- only for their calendar week or month from here (refresh_days.window_changed is false for them).
-- {gold_table} is a whitelisted identifier formatted in by warehouse.gold.
create or replace temp table previous_rows as
select mart.*
from {gold_table} as mart
semi join refresh_days as refresh
    on refresh.app = mart.app and refresh.source = mart.source and refresh.day = mart.day
