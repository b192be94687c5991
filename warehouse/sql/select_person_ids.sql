-- Every (app, id) gold's person-level state holds: people and the ids linked to them. An erasure
-- (pipelines/erasure.py) finds the erased ones among them by their keyed hashes.
select app, person_id as id from identity_links
union
select app, alias_id from identity_links
union
select app, person_id from person_first_seen
union
select app, person_id from first_seen_moves
union
select app, alias_id from anonymous_days
