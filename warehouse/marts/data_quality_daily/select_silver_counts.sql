-- Silver rows added (+1) and removed (-1) per (app, source, UTC received day, outcome: 'bot', 'asset'
-- or 'valid') since the mart's watermark, from silver's change data feed (silver_count_changes: app,
-- source, received_at, is_bot, is_asset, _change_type; streamed, read once: a rebuild's feed is the
-- whole of silver), so a received day's valid, bot and asset counts follow its previous counts and what changed, never a re-read
-- of the day (the hot path's today holds every micro-batch since midnight).
select
    app,
    source,
    cast(received_at as date) as day,
    case when is_bot then 'bot' when coalesce(is_asset, false) then 'asset' else 'valid' end as outcome,
    cast(sum(case when _change_type = 'delete' then -1 else 1 end) as bigint) as events
from silver_count_changes
group by all
