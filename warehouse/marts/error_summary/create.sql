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
