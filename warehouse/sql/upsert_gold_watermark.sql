-- Record how far a mart has consumed silver, which bronze version that silver covered, the
-- fingerprint of the definitions it was built with ('' for marts without any), and the quarantine
-- version read (data_quality_daily; null for the others).
insert or replace into gold_watermarks (mart, silver_version, bronze_version, updated_at, definition, quarantine_version)
values ($mart, $silver_version, $bronze_version, now(), $definition, $quarantine_version)
