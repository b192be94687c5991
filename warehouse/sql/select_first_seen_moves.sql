-- The replaced first_seen values of silver versions ($after_version, $until_version], as changed rows
-- (app, source, timestamp): their reporting days lose a new person.
select app, source, previous_first_seen as "timestamp"
from first_seen_moves
where silver_version > $after_version and silver_version <= $until_version
