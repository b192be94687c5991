-- How many rows of gold's person-level state delete_erased_people.sql deletes, per table
-- (erased_ids: app, id: the erased people and the ids linked to them).
select 'identity_links' as state, count(*) as deleted
from identity_links as links
where exists (
    select 1 from erased_ids as erased
    where erased.app = links.app and erased.id in (links.person_id, links.alias_id)
)
union all
select 'person_first_seen', count(*)
from person_first_seen as seen semi join erased_ids as erased on erased.app = seen.app and erased.id = seen.person_id
union all
select 'first_seen_moves', count(*)
from first_seen_moves as moves semi join erased_ids as erased on erased.app = moves.app and erased.id = moves.person_id
union all
select 'anonymous_days', count(*)
from anonymous_days as days semi join erased_ids as erased on erased.app = days.app and erased.id = days.alias_id
