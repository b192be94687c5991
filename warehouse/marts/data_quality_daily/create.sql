create table if not exists data_quality_daily (
    app varchar not null,
    source varchar not null,
    day date not null,
    outcome varchar not null,
    reason varchar not null,
    events bigint not null,
    reason_type varchar not null default '',
    primary key (app, source, day, outcome, reason)
);

-- Warehouse files created before reason_type existed.
alter table data_quality_daily add column if not exists reason_type varchar default '';
