create table if not exists sessions (
    app varchar not null,
    source varchar not null,
    day date not null,
    session_key varchar not null,
    client_session_id varchar,
    started_at timestamptz not null,
    ended_at timestamptz not null,
    duration_s double not null,
    events bigint not null,
    page_views bigint not null,
    entry_page varchar,
    exit_page varchar,
    silver_version bigint
    -- no primary key (as active_person_days/weeks): see warehouse.gold.UNKEYED_TABLES
);

-- The person a session is of (identity-stitched, as people_events): a micro-batch's new events continue
-- that person's last session (append.sql). Person-level, as the table: kept out of the serving snapshot.
alter table sessions add column if not exists person_id varchar;
