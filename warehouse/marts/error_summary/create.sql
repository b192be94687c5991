create table if not exists error_summary (
    app varchar not null,
    source varchar not null,
    day date not null,
    fingerprint varchar not null,
    error_type varchar not null,
    title varchar not null,
    events bigint not null,
    people bigint not null,
    first_seen_at timestamptz not null,
    last_seen_at timestamptz not null,
    primary key (app, source, day, fingerprint)
);

alter table error_summary add column if not exists silver_version bigint;

-- error_summary_people: which people each row counted (grain + person_id), so a micro-batch that only
-- adds errors to a day counts just its new people (append.sql). Person-level, not served.
create table if not exists error_summary_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    fingerprint varchar not null,
    person_id varchar not null
);
