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
