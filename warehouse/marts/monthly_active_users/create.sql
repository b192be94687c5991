create table if not exists monthly_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    calendar_month date not null,
    mau_rolling_30d bigint not null,
    mau_calendar_month bigint not null,
    primary key (app, source, day)
);

alter table monthly_active_users add column if not exists silver_version bigint;
