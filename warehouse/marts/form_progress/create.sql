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

-- form_progress_people: per person, form and day, what the rows are computed from (macros.sql): each
-- valid field event counted by step and field name, and a row with no step for a submit. A micro-batch
-- that only adds form events to a day adds them here and recomputes that day's forms from it
-- (append.sql), not from the day's events. Person-level, not served.
create table if not exists form_progress_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    form varchar not null,
    person_id varchar not null,
    step integer,
    field varchar,
    events bigint not null
);
