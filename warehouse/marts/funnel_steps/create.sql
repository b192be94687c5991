create table if not exists funnel_steps (
    app varchar not null,
    source varchar not null,
    funnel varchar not null,
    period varchar not null,
    day date not null,
    step integer not null,
    step_name varchar not null,
    people bigint not null,
    conversion_rate double not null,
    step_conversion_rate double not null,
    dropped_off bigint not null,
    median_s_from_previous double,
    primary key (app, source, funnel, period, day, step)
);

alter table funnel_steps add column if not exists silver_version bigint;
