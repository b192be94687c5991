-- The valid, bot and asset counts of the (app, source, received day)s in quality_days(app, source, day) as the
-- mart holds them before they are recomputed (insert.sql adds silver_counts to them).
select quality.app, quality.source, quality.day, quality.outcome, quality.events
from data_quality_daily as quality
semi join quality_days as changed
    on changed.app = quality.app and changed.source = quality.source and changed.day = quality.day
where quality.outcome in ('valid', 'bot', 'asset')
