create table if not exists form_progress (
    app varchar not null,
    source varchar not null,
    day date not null,
    form varchar not null,
    step integer not null,
    field varchar,
    people_started bigint not null,
    people_reached bigint not null,
    people_furthest bigint not null,
    people_abandoned bigint not null,
    people_submitted bigint not null,
    reach_rate double not null,
    primary key (app, source, day, form, step)
);

alter table form_progress add column if not exists silver_version bigint;
