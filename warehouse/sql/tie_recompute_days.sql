-- An erasure's or a rescrub's recorded days (insert_recompute_days.sql) become a change of silver
-- version $silver_version: each mart recomputes them when its refresh passes that version.
update gold_recompute_days
set silver_version = $silver_version
where request_id = $request_id and silver_version is null
