create table if not exists daily_sessions (
    app varchar not null,
    source varchar not null,
    day date not null,
    sessions bigint not null,
    bounce_rate double not null,
    median_duration_s double not null,
    events_per_session double not null,
    silver_version bigint,
    primary key (app, source, day)
);
