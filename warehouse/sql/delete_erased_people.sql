-- An erasure (pipelines/erasure.py): the erased people's rows leave gold's person-level state
-- (erased_ids: app, id: the erased people and the ids linked to them). The marts' own person-level
-- rows (active_person_days, <mart>_people, sessions) go when their days are recomputed
-- (gold_recompute_days).
delete from identity_links as links
where exists (
    select 1 from erased_ids as erased
    where erased.app = links.app and erased.id in (links.person_id, links.alias_id)
);

delete from person_first_seen as seen
using erased_ids as erased
where erased.app = seen.app and erased.id = seen.person_id;

delete from first_seen_moves as moves
using erased_ids as erased
where erased.app = moves.app and erased.id = moves.person_id;

delete from anonymous_days as days
using erased_ids as erased
where erased.app = days.app and erased.id = days.alias_id;
