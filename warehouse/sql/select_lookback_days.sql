-- The refresh days (refresh_days: app, source, day) and the $lookback_days days before each: the days
-- whose rows a mart's append.sql may have changed (sessions: a session continued from the day before).
select distinct refresh.app, refresh.source, cast(refresh.day - cast(shift.days as integer) as date) as day
from refresh_days as refresh, range(0, $lookback_days + 1) as shift (days)
