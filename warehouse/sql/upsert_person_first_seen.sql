-- Merge first_seen_candidates into person_first_seen: new people are added, an earlier candidate
-- replaces the stored first_seen (a first_seen never moves later: see docs/analytics.md).
insert into person_first_seen (app, source, person_id, first_seen, silver_version)
select app, source, person_id, first_seen, $silver_version from first_seen_candidates
on conflict (app, source, person_id) do update
set first_seen = excluded.first_seen, silver_version = excluded.silver_version
where excluded.first_seen < person_first_seen.first_seen
