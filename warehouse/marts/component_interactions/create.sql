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

alter table component_interactions add column if not exists silver_version bigint;

-- component_interactions_people: which people each row counted (grain + person_id), so a micro-batch
-- that only adds events to a day counts just its new people (append.sql). Person-level, not served.
create table if not exists component_interactions_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    page_url varchar not null,
    component varchar not null,
    interaction varchar not null,
    person_id varchar not null
);
