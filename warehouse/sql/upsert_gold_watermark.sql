-- Record how far a mart has consumed silver, and which bronze version that silver covered.
insert or replace into gold_watermarks (mart, silver_version, bronze_version, updated_at)
values ($mart, $silver_version, $bronze_version, now())
