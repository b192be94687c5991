create table if not exists daily_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    dau bigint not null,
    primary key (app, source, day)
);

-- Row-level lineage of the incremental marts: the silver version each row was computed from
-- (stamped by mark_refreshed_rows.sql; null on rows written before the column existed).
alter table daily_active_users add column if not exists silver_version bigint;

-- New vs returning people (added later: older rows read NULL until the mart's new definition rebuilds it).
alter table daily_active_users add column if not exists new_people bigint;

alter table daily_active_users add column if not exists returning_people bigint;
