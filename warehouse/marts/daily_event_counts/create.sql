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

-- daily_event_counts_people: which people each row counted (grain + person_id), so a micro-batch
-- that only adds events to a day counts just its new people (append.sql). Person-level, not served.
-- No primary key (as active_person_days): one row per grain and person by construction.
create table if not exists daily_event_counts_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    event_type varchar not null,
    is_bot boolean not null,
    person_id varchar not null
);
