create table if not exists weekly_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    calendar_week date not null,
    wau_rolling_7d bigint not null,
    wau_calendar_week bigint not null,
    primary key (app, source, day)
);

alter table weekly_active_users add column if not exists silver_version bigint;
