-- Bronze rows added (+1) and removed (-1) per (app, source, received_date) since the mart's watermark,
-- from bronze's change data feed (bronze_changes: app, source, received_date, _change_type; streamed,
-- read once: a rebuild's feed is the whole of bronze).
select app, source, received_date, cast(sum(case when _change_type = 'delete' then -1 else 1 end) as bigint) as events
from bronze_changes
group by all
