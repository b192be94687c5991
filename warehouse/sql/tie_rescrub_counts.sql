-- Committed count changes (rescrub_count_changes) become a change of silver version $silver_version,
-- which data_quality_daily adds when its refresh passes it; those every mart has passed already go.
delete from rescrub_count_changes
where silver_version <= (select min(silver_version) from gold_watermarks);

update rescrub_count_changes
set silver_version = $silver_version
where committed and silver_version is null
