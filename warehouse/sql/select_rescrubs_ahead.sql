-- How many rescrub records wait for a silver version after $silver_version (the hot table's current
-- one): then a commit must make that version (pipelines/rescrub.py, GoldChanges.finish).
select
    (
        select count(*) from gold_recompute_days
        where starts_with(request_id, 'rescrub:') and silver_version > $silver_version
    )
    + (select count(*) from rescrub_count_changes where silver_version > $silver_version)
