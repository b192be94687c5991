create table if not exists active_person_days (
    app varchar not null,
    source varchar not null,
    day date not null,
    person_id varchar not null,
    silver_version bigint
);

-- person_last_active: the last reporting day each person was active, per app and source (kept with
-- active_person_days by maintain.sql; person-level, kept out of the serving snapshot).
-- No primary key: rows are replaced per person (delete, then insert), one per person by construction.
create table if not exists person_last_active (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    last_day date not null
);
