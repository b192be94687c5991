-- Gold marts and their watermarks (idempotent DDL). Day columns are DATE: calendar days of the reporting time zone (EVENTLAKE_REPORTING_TIMEZONE, default UTC).
create table if not exists daily_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    dau bigint not null,
    primary key (app, source, day)
);

create table if not exists monthly_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    calendar_month date not null,
    mau_rolling_30d bigint not null,
    mau_calendar_month bigint not null,
    primary key (app, source, day)
);

create table if not exists weekly_active_users (
    app varchar not null,
    source varchar not null,
    day date not null,
    calendar_week date not null,
    wau_rolling_7d bigint not null,
    wau_calendar_week bigint not null,
    primary key (app, source, day)
);

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

create table if not exists daily_page_views (
    app varchar not null,
    source varchar not null,
    day date not null,
    page_url varchar not null,
    views bigint not null,
    people bigint not null,
    primary key (app, source, day, page_url)
);

create table if not exists data_quality_daily (
    app varchar not null,
    source varchar not null,
    day date not null,
    outcome varchar not null,
    reason varchar not null,
    events bigint not null,
    reason_type varchar not null default '',
    primary key (app, source, day, outcome, reason)
);
-- Warehouse files created before reason_type existed.
alter table data_quality_daily add column if not exists reason_type varchar default '';

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

create table if not exists component_interactions (
    app varchar not null,
    source varchar not null,
    day date not null,
    page_url varchar not null,
    component varchar not null,
    interaction varchar not null,
    events bigint not null,
    people bigint not null,
    primary key (app, source, day, page_url, component, interaction)
);

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

create table if not exists active_person_days (
    app varchar not null,
    source varchar not null,
    day date not null,
    person_id varchar not null,
    silver_version bigint
);

-- person_last_active: the last reporting day each person was active, per app and source (kept with
-- active_person_days by maintain_person_last_active.sql; person-level, kept out of the serving snapshot).
-- No primary key: rows are replaced per person (delete, then insert), one per person by construction.
create table if not exists person_last_active (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    last_day date not null
);

create table if not exists active_person_weeks (
    app varchar not null,
    source varchar not null,
    day date not null,
    person_id varchar not null
);

create table if not exists retention_cohorts (
    app varchar not null,
    source varchar not null,
    cohort_week date not null,
    week_number integer not null,
    cohort_people bigint not null,
    retained_people bigint not null,
    retention_rate double not null,
    primary key (app, source, cohort_week, week_number)
);

create table if not exists sessions (
    app varchar not null,
    source varchar not null,
    day date not null,
    session_key varchar not null,
    client_session_id varchar,
    started_at timestamptz not null,
    ended_at timestamptz not null,
    duration_s double not null,
    events bigint not null,
    page_views bigint not null,
    entry_page varchar,
    exit_page varchar,
    silver_version bigint
    -- no primary key (as active_person_days/weeks): see warehouse.gold.UNKEYED_TABLES
);

create table if not exists daily_sessions (
    app varchar not null,
    source varchar not null,
    day date not null,
    sessions bigint not null,
    bounce_rate double not null,
    median_duration_s double not null,
    events_per_session double not null,
    silver_version bigint,
    primary key (app, source, day)
);

-- Identity stitching state (pipelines/identity.py; person-level, kept out of the serving snapshot).
create table if not exists identity_links (
    app varchar not null,
    alias_id varchar not null,
    person_id varchar not null,
    linked_by varchar not null,
    linked_at timestamptz not null,
    silver_version bigint not null,
    primary key (app, alias_id)
);

-- person_first_seen: when each person (per app and source) was first active, UTC; new vs returning
-- people read it (pipelines/first_seen.py). first_seen_moves: the earlier first_seen a late event or an
-- identity merge replaced, and the silver version that replaced it (that day's new people change).
create table if not exists person_first_seen (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    first_seen timestamptz not null,
    silver_version bigint not null,
    primary key (app, source, person_id)
);

create table if not exists first_seen_moves (
    app varchar not null,
    source varchar not null,
    person_id varchar not null,
    previous_first_seen timestamptz not null,
    silver_version bigint not null
);

create table if not exists anonymous_days (
    app varchar not null,
    source varchar not null,
    alias_id varchar not null,
    day date not null,
    primary key (app, source, alias_id, day)
);

create table if not exists gold_watermarks (
    mart varchar primary key,
    silver_version bigint not null,
    bronze_version bigint not null,
    updated_at timestamptz not null,
    definition varchar not null default ''
);
-- Warehouse files created before marts recorded the definition (e.g. funnels) they were built with.
alter table gold_watermarks add column if not exists definition varchar default '';
-- The quarantine version data_quality_daily read (added when it became incremental; null before).
alter table gold_watermarks add column if not exists quarantine_version bigint;

-- Row-level lineage of the incremental marts: the silver version each row was computed from
-- (stamped by mark_refreshed_rows.sql; null on rows written before the column existed).
alter table daily_active_users add column if not exists silver_version bigint;
-- New vs returning people (added later: older rows read NULL until the mart's new definition rebuilds it).
alter table daily_active_users add column if not exists new_people bigint;
alter table daily_active_users add column if not exists returning_people bigint;
alter table weekly_active_users add column if not exists silver_version bigint;
alter table monthly_active_users add column if not exists silver_version bigint;
alter table daily_event_counts add column if not exists silver_version bigint;
alter table daily_page_views add column if not exists silver_version bigint;
alter table funnel_steps add column if not exists silver_version bigint;
alter table form_progress add column if not exists silver_version bigint;
alter table component_interactions add column if not exists silver_version bigint;
alter table error_summary add column if not exists silver_version bigint;
alter table active_person_weeks add column if not exists silver_version bigint;
