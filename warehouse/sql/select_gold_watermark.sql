-- Silver and bronze versions a mart has consumed, and its definition fingerprint; no row when it never ran.
select silver_version, bronze_version, definition from gold_watermarks where mart = $mart
