-- The (app, source, day) triples whose mart rows may change, `day` a calendar day of the reporting
-- time zone ($timezone, IANA): the day of every changed silver row (changed_rows: app, source,
-- timestamp), and the days identity merges touched (merged_days: app, source, day as UTC days, so
-- widened to the previous and next day unless the reporting zone is UTC).
select distinct app, source, cast(timezone($timezone, "timestamp") as date) as day
from changed_rows
union
select distinct merged.app, merged.source, cast(merged.day + shift.days as date) as day
from merged_days as merged,
    unnest(case when $timezone = 'UTC' then [0] else [-1, 0, 1] end) as shift (days)
