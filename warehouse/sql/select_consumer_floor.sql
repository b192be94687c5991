-- The lowest versions of silver, bronze and the quarantine that any gold mart or shared state has
-- consumed (its watermark): the table versions whose log entries and files maintenance must keep.
select min(silver_version) as silver_version,
    min(bronze_version) as bronze_version,
    min(quarantine_version) as quarantine_version
from gold_watermarks
