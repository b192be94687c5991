create table if not exists active_person_weeks (
    app varchar not null,
    source varchar not null,
    day date not null,
    person_id varchar not null
);

alter table active_person_weeks add column if not exists silver_version bigint;
