-- The anonymous and session ids identity stitching linked to the users being erased
-- (erased_users: app, user_id, in silver form; pipelines/erasure.py).
select links.app, links.alias_id
from identity_links as links
inner join erased_users as erased on erased.app = links.app and erased.user_id = links.person_id
