-- Record how far a mart has consumed silver, which bronze version that silver covered, and the
-- fingerprint of the definitions it was built with ('' for marts without any).
insert or replace into gold_watermarks (mart, silver_version, bronze_version, updated_at, definition)
values ($mart, $silver_version, $bronze_version, now(), $definition)
