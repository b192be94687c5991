-- Every rescrub's recorded days still without a silver version (this run's, and any a run under other
-- rules left: request ids 'rescrub:…') become a change of silver version $silver_version, which each
-- mart recomputes them at.
update gold_recompute_days
set silver_version = $silver_version
where starts_with(request_id, 'rescrub:') and silver_version is null
