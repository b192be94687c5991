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

-- active_users_breakdown_people: which people each row counted (grain + person_id), so a micro-batch
-- that only adds events to a day counts just its new people (append.sql). Person-level, not served.
create table if not exists active_users_breakdown_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    breakdown varchar not null,
    value varchar not null,
    person_id varchar not null
);
