-- Gold's identity links of the users being erased (erased_users: app, user_id, in silver form) and
-- of the ids seen with them (seen_aliases: app, alias_id), whoever they link to: an id another
-- person was linked to first stays theirs (pipelines/erasure.py).
select links.app, links.alias_id, links.person_id
from identity_links as links
where exists (
    select 1 from erased_users as erased
    where erased.app = links.app and erased.user_id = links.person_id
)
or exists (
    select 1 from seen_aliases as seen
    where seen.app = links.app and seen.alias_id = links.alias_id
)
