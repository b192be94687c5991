-- Gold marts and state that have not read silver, or the quarantine, up to the given versions:
-- their next change-feed read needs the log entries and files a history purge removes.
select mart, silver_version, quarantine_version
from gold_watermarks
where silver_version < $silver_version
    or quarantine_version < $quarantine_version
order by mart
