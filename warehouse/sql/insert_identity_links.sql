-- identity_links: anonymous ids (device/anonymousId, client session id, an alias's previousId) linked
-- to the user id of the person they belong to, per app. The source of identity stitching.
-- A link comes from a silver row that carries both a user id and an anonymous id or session id (an
-- identify call, or any event sent after login), or from an `alias` event (previousId → userId).
-- First link wins, as PostHog's person merging: an alias already linked keeps its person (a shared
-- device does not merge two users); among new candidates the earliest event (then the smallest
-- user id) decides. A user id is always its own person (no user-to-user merge, PostHog's default).
-- Inputs: new_silver (create_new_silver_identities.sql: the identities of the silver rows inserted since
-- the last identity refresh, with their earliest timestamp and _commit_version) and
-- new_aliases (its alias events, with their properties).
-- silver_version: the silver version whose rows created the link (marts use it to find merges to apply).
insert into identity_links (app, alias_id, person_id, linked_by, linked_at, silver_version)
with candidates as (
    select app, anonymous_id as alias_id, user_id as person_id, 'anonymous_id' as linked_by, "timestamp", _commit_version
    from new_silver
    where user_id is not null and anonymous_id is not null
    union all
    select app, session_id, user_id, 'session_id', "timestamp", _commit_version
    from new_silver
    where user_id is not null and session_id is not null
    union all
    select app, properties ->> '$.previousId', user_id, 'alias', "timestamp", _commit_version
    from new_aliases
    where event_type = 'alias' and user_id is not null and json_type(properties) = 'OBJECT'
),

fresh as (
    select candidates.*
    from candidates
    anti join identity_links as known on known.app = candidates.app and known.alias_id = candidates.alias_id
    where nullif(trim(candidates.alias_id), '') is not null
        and nullif(trim(candidates.person_id), '') is not null
        and candidates.alias_id <> candidates.person_id
),

final as (
    select
        app,
        alias_id,
        arg_min(person_id, ("timestamp", person_id)) as person_id,
        arg_min(linked_by, ("timestamp", person_id)) as linked_by,
        min("timestamp") as linked_at,
        min(_commit_version) as silver_version
    from fresh
    group by app, alias_id
)

select app, alias_id, person_id, linked_by, linked_at, silver_version from final
