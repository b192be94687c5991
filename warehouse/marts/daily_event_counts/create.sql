create table if not exists daily_event_counts (
    app varchar not null,
    source varchar not null,
    day date not null,
    event_type varchar not null,
    is_bot boolean not null,
    events bigint not null,
    people bigint not null,
    primary key (app, source, day, event_type, is_bot)
);

alter table daily_event_counts add column if not exists silver_version bigint;
