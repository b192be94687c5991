-- Silver and bronze versions a mart has consumed; no row when it never ran.
select silver_version, bronze_version from gold_watermarks where mart = $mart
