create table if not exists active_users_breakdown (
    app varchar not null,
    source varchar not null,
    day date not null,
    breakdown varchar not null,
    value varchar not null,
    active_users bigint not null,
    silver_version bigint,
    primary key (app, source, day, breakdown, value)
);
