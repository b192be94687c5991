-- Remove the data_quality_daily rows about to be recomputed: the days in quality_days(app, source, day),
-- or every row when $rebuild (a first build, or a warehouse built before the mart was incremental).
delete from data_quality_daily as quality
where $rebuild
    or exists (
        select 1
        from quality_days as changed
        where changed.app = quality.app and changed.source = quality.source and changed.day = quality.day
    )
