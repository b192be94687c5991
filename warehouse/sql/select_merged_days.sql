-- Days whose people change because identities merged: the (app, source, day) on which an alias that
-- was linked in silver versions ($after_version, $until_version] was active without a user id.
select distinct days.app, days.source, days.day
from identity_links as links
inner join anonymous_days as days on days.app = links.app and days.alias_id = links.alias_id
where links.silver_version > $after_version and links.silver_version <= $until_version
