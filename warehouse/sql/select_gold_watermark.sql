-- Silver and bronze versions a mart has consumed, its definition fingerprint and the quarantine
-- version read (data_quality_daily only); no row when it never ran.
select silver_version, bronze_version, definition, quarantine_version from gold_watermarks where mart = $mart
