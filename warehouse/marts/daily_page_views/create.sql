create table if not exists daily_page_views (
    app varchar not null,
    source varchar not null,
    day date not null,
    page_url varchar not null,
    views bigint not null,
    people bigint not null,
    primary key (app, source, day, page_url)
);

alter table daily_page_views add column if not exists silver_version bigint;

-- daily_page_views_people: which people each row counted (grain + person_id), so a micro-batch that
-- only adds page views to a day counts just its new people (append.sql). Person-level, not served.
create table if not exists daily_page_views_people (
    app varchar not null,
    source varchar not null,
    day date not null,
    page_url varchar not null,
    person_id varchar not null
);
