-- What each (app, source, received day) of quality_days(app, source, day) received, as the mart holds it
-- before they are recomputed: the sum of its outcomes (valid, bot, asset, quarantined and duplicate add up
-- to the bronze rows received, insert.sql).
select quality.app, quality.source, quality.day, cast(sum(quality.events) as bigint) as events
from data_quality_daily as quality
semi join quality_days as changed
    on changed.app = quality.app and changed.source = quality.source and changed.day = quality.day
group by all
