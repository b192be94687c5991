-- How many recorded days (gold_recompute_days: an erasure's or a rescrub's) some mart has not recomputed yet: the
-- gold step rewrites the warehouse file after recomputing them (warehouse.gold.rewrite_file).
select count(*)
from gold_recompute_days
where silver_version > (select coalesce(min(silver_version), -1) from gold_watermarks)
