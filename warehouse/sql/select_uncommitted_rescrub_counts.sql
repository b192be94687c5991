-- The cold partitions' rewrite attempts whose count changes were recorded but not seen committed (a
-- rescrub stopped around that commit): (event_date, attempt).
select distinct event_date, attempt
from rescrub_count_changes
where not committed
order by all
