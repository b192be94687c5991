-- The people whose stored first_seen is the time of their earliest static-asset request: it was
-- counted as activity before silver flagged assets (a rescrub filled silver.is_asset in since).
-- Input: people_events over silver's asset rows only, each presented as activity (is_asset false),
-- so the rows resolve to people exactly as the marts resolve activity.
with earliest_asset as (
    select app, source, person_id, min("timestamp") as first_asset
    from people_events
    group by all
)

select seen.app, seen.source, seen.person_id, seen.first_seen as previous_first_seen
from person_first_seen as seen
inner join earliest_asset as asset
    on
        asset.app = seen.app
        and asset.source = seen.source
        and asset.person_id = seen.person_id
        and asset.first_asset = seen.first_seen
