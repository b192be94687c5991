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
