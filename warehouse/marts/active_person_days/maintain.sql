-- person_last_active: the last reporting day each person was active, per app and source — the state the
-- latest day's rolling counts and the latest calendar week's and month's counts are taken from (WAU, MAU,
-- active_person_weeks), so a new day never re-reads the person-days of its windows. With no person-day after
-- day D, the people active in D - n .. D are exactly those whose last day is on or after D - n.
-- Kept by the active_person_days refresh, batch by batch and in the same transaction, from the refreshed days
-- (refresh_days(app, source, day)) whose person-days it has just rewritten:
--   a person whose stored last day was not rewritten keeps the later of it and their rewritten days;
--   a person whose stored last day was rewritten (a reprocess or an identity merge may have removed it) gets
--   the last of all their person-days, read back; a person left with none (merged into another) is removed.
-- Grain: (app, source, person_id). Inputs: active_person_days after the rewrite, refresh_days.
create or replace temp table last_active_updates as
with rewritten as (
    select days.app, days.source, days.person_id, max(days.day) as last_day
    from active_person_days as days
    semi join refresh_days as refresh
        on refresh.app = days.app and refresh.source = days.source and refresh.day = days.day
    group by days.app, days.source, days.person_id
),

rewritten_last as (
    select state.app, state.source, state.person_id
    from person_last_active as state
    semi join refresh_days as refresh
        on refresh.app = state.app and refresh.source = state.source and refresh.day = state.last_day
),

read_back as (
    select days.app, days.source, days.person_id, max(days.day) as last_day
    from active_person_days as days
    semi join rewritten_last as moved
        on moved.app = days.app and moved.source = days.source and moved.person_id = days.person_id
    group by days.app, days.source, days.person_id
),

advanced as (
    select rewritten.app, rewritten.source, rewritten.person_id, greatest(rewritten.last_day, state.last_day) as last_day
    from rewritten
    left join person_last_active as state
        on state.app = rewritten.app and state.source = rewritten.source and state.person_id = rewritten.person_id
    anti join rewritten_last as moved
        on moved.app = rewritten.app and moved.source = rewritten.source and moved.person_id = rewritten.person_id
)

select app, source, person_id, last_day from advanced
union all
select app, source, person_id, last_day from read_back
union all
-- people whose stored last day was rewritten and who have no person-day left: removed below
select moved.app, moved.source, moved.person_id, null as last_day
from rewritten_last as moved
anti join read_back
    on read_back.app = moved.app and read_back.source = moved.source and read_back.person_id = moved.person_id;

delete from person_last_active as state
using last_active_updates as updates
where state.app = updates.app and state.source = updates.source and state.person_id = updates.person_id;

insert into person_last_active (app, source, person_id, last_day)
select app, source, person_id, last_day from last_active_updates where last_day is not null;

drop table last_active_updates;
