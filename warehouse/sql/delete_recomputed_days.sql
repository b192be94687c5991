-- Recorded days every mart recomputed already (gold_recompute_days: silver_version at or before the
-- oldest mart watermark) are forgotten: the table holds only erasures and rescrubs in flight.
delete from gold_recompute_days
where silver_version <= (select min(silver_version) from gold_watermarks)
