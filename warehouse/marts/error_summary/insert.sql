-- error_summary: error events grouped by a normalized stack fingerprint, per app, reporting day and group.
-- Definition (event conventions in docs/analytics.md): an `errors` (or `error`) event whose properties
-- carry `stackTrace` (or `stack`), `message` and optionally `type`.
--   fingerprint  first 16 hex digits of md5(error_type || frames); frames are the stack's frame lines
--                (V8/Java `at …`, Python `File "…"`, Firefox/Safari `fn@url`) with what changes between
--                builds and deploys removed: line and column numbers (`:120:15`, `line 42`), query
--                strings, build hashes of 8+ hex digits in file names (`app.3f9a1c2b.js` → `app.js`)
--                and hex addresses. Without frame lines the title (below) is grouped instead. As in
--                Sentry's grouping: by stack when there is one (message ignored), else by message
--                with its variable parts removed.
--   error_type   properties.type, else the `…Error`/`…Exception` name that starts a line of the stack
--                (its header, or a Python traceback's last line), else of the message, else 'Error'.
--   title        the message's first line (else a Python traceback's last line, else the stack's first),
--                with quoted literals → '…', hex addresses and 8+ hex-digit runs → <hex>, numbers → <n>;
--                at most 200 characters. A stack group shows its alphabetically first title.
--   events, people (distinct), first_seen_at / last_seen_at (UTC) within the day; the serving view
--   error_groups gives each group's first and last seen over all days.
-- Grain: (app, source, day, fingerprint).
-- Inputs: error_summary_facts() (macros.sql) over the refreshed days; $first_day/$last_day bound the
-- scan. A day whose only change is inserted events is not recomputed here: append.sql adds them.
insert into error_summary (app, source, day, fingerprint, error_type, title, events, people, first_seen_at, last_seen_at)
select
    app,
    source,
    day,
    fingerprint,
    min(error_type) as error_type,
    min(title) as title,
    count(*) as events,
    count(distinct person_id) as people,
    min("timestamp") as first_seen_at,
    max("timestamp") as last_seen_at
from error_summary_facts()
where day between $first_day and $last_day
group by app, source, day, fingerprint
