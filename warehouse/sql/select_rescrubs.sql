-- How many days rescrubs recorded (gold_recompute_days, request ids 'rescrub:…') at silver versions
-- ($after_version, $until_version]: then the first-seen times are rechecked (pipelines/first_seen.py).
select count(*)
from gold_recompute_days
where starts_with(request_id, 'rescrub:') and silver_version > $after_version and silver_version <= $until_version
