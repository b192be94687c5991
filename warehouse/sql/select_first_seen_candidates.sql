-- Candidate first_seen per (app, source, person) from new silver rows and new identity links.
-- Inputs: people_events over the silver rows inserted in ($after_version, $until_version] (bots
-- excluded, persons resolved through identity_links), identity_links, person_first_seen.
-- A link made in that range gives its person the alias's own first_seen: the anonymous history
-- the person inherits (pipelines/first_seen.py).
with new_rows as (
    select app, source, person_id, min("timestamp") as first_seen
    from people_events
    group by app, source, person_id
),

inherited as (
    select links.app, seen.source, links.person_id, min(seen.first_seen) as first_seen
    from identity_links as links
    inner join person_first_seen as seen on seen.app = links.app and seen.person_id = links.alias_id
    where links.silver_version > $after_version and links.silver_version <= $until_version
    group by links.app, seen.source, links.person_id
)

select app, source, person_id, min(first_seen) as first_seen
from (
    select app, source, person_id, first_seen from new_rows
    union all
    select app, source, person_id, first_seen from inherited
)
group by app, source, person_id
