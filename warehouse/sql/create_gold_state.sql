-- Gold state shared by every mart (idempotent DDL): identity stitching, first-seen times and the
-- watermarks. Each mart creates its own table from its folder's create.sql (warehouse/marts).

-- Identity stitching state (pipelines/identity.py; person-level, kept out of the serving snapshot).
create table if not exists identity_links (
    app varchar not null,
    alias_id varchar not null,
    person_id varchar not null,
    linked_by varchar not null,
    linked_at timestamptz not null,
    silver_version bigint not null,
    primary key (app, alias_id)
);

-- person_first_seen: when each person (per app and source) was first active, UTC; new vs returning
-- people read it (pipelines/first_seen.py). first_seen_moves: the earlier first_seen a late event or an
-- identity merge replaced, and the silver version that replaced it (that day's new people change).
create table if not exists person_first_seen (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    first_seen timestamptz not null,
    silver_version bigint not null,
    primary key (app, source, person_id)
);

create table if not exists first_seen_moves (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    previous_first_seen timestamptz not null,
    silver_version bigint not null
);

create table if not exists anonymous_days (
    app varchar not null,
    source varchar not null,
    alias_id varchar not null,
    day date not null,
    primary key (app, source, alias_id, day)
);

create table if not exists gold_watermarks (
    mart varchar primary key,
    silver_version bigint not null,
    bronze_version bigint not null,
    updated_at timestamptz not null,
    definition varchar not null default ''
);

-- Warehouse files created before marts recorded the definition (e.g. funnels) they were built with.
alter table gold_watermarks add column if not exists definition varchar default '';

-- The quarantine version data_quality_daily read (added when it became incremental; null before).
alter table gold_watermarks add column if not exists quarantine_version bigint;

-- Days gold must recompute at a silver version although silver's change feed may not carry them:
-- an erasure's days (pipelines/erasure.py) and a rescrub's (request_id 'rescrub:<rules fingerprint>',
-- pipelines/rescrub.py), cold ones included. silver_version null: recorded, the erasure or rescrub
-- not finished yet.
create table if not exists gold_recompute_days (
    request_id varchar not null,
    app varchar not null,
    source varchar not null,
    day date not null,
    event_type varchar not null,
    silver_version bigint,
    primary key (request_id, app, source, day, event_type)
);

-- What a rescrub of silver's cold tier changed in data_quality_daily's counts (pipelines/rescrub.py):
-- the change of each (app, source, UTC received day, outcome)'s silver rows, per cold partition
-- (event_date) rewritten, which no change feed carries. attempt: the application transaction version
-- the partition's commit records; committed: that commit happened (recorded before, marked after, or
-- settled by the next rescrub from the table's transaction version); silver_version: the version the
-- data quality mart adds the committed changes at (null: not given one yet).
create table if not exists rescrub_count_changes (
    request_id varchar not null,
    event_date date not null,
    attempt bigint not null,
    app varchar not null,
    source varchar not null,
    day date not null,
    outcome varchar not null,
    events bigint not null,
    committed boolean not null,
    silver_version bigint,
    primary key (request_id, event_date, attempt, app, source, day, outcome)
);
