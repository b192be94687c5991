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
-- Inputs: people_events (bots excluded), refresh_days(app, source, day); $first_day/$last_day bound the scan.
insert into error_summary (app, source, day, fingerprint, error_type, title, events, people, first_seen_at, last_seen_at)
with raw_errors as (
    select
        app,
        source,
        day,
        person_id,
        "timestamp",
        coalesce(nullif(properties ->> '$.stackTrace', ''), properties ->> '$.stack', '') as stack,
        coalesce(properties ->> '$.message', '') as message,
        nullif(trim(properties ->> '$.type'), '') as declared_type
    from people_events
    where day between $first_day and $last_day
        and event_type in ('errors', 'error')
        and json_type(properties) = 'OBJECT'
),

scoped as (
    select raw_errors.*
    from raw_errors
    inner join refresh_days as refresh
        on refresh.app = raw_errors.app
        and refresh.source = raw_errors.source
        and refresh.day = raw_errors.day
),

parsed as (
    select
        *,
        coalesce(
            declared_type,
            -- a line that starts with `SomeError:` (a stack's header, a traceback's last line), stack first
            nullif(regexp_extract(stack, '(?m)^\s*([A-Za-z_$][A-Za-z0-9_$.]*(?:Error|Exception))\s*(?::|$)', 1), ''),
            nullif(regexp_extract(message, '(?m)^\s*([A-Za-z_$][A-Za-z0-9_$.]*(?:Error|Exception))\s*(?::|$)', 1), ''),
            'Error'
        ) as error_type,
        list_transform(
            list_filter(
                string_split(stack, chr(10)), lambda line: regexp_matches(line, '^\s*(at\s|File\s"|[^\s@]*@\S+:\d+(:\d+)?\s*$)')
            ),
            lambda line: regexp_replace(
                regexp_replace(
                    regexp_replace(
                        regexp_replace(
                            regexp_replace(
                                regexp_replace(line, '(:\d+)+(\)?)\s*$', '\2'),  -- :line:col at the end
                                ',\s*line\s+\d+', ''                             -- Python's `, line 42`
                            ),
                            '\?[^\s)]*', '', 'g'                                 -- query strings
                        ),
                        '[.-][0-9a-f]{8,}(\.[A-Za-z]+)', '\1', 'g'               -- build hashes in file names
                    ),
                    '0x[0-9a-fA-F]+', '0x', 'g'                                  -- addresses
                ),
                '^\s+|\s+$', '', 'g'                                                -- tabs and spaces around
            )
        ) as frames,
        case
            when regexp_matches(message, '\S') then split_part(regexp_replace(message, '^\s+', ''), chr(10), 1)
            -- a Python traceback ends with its `Type: message` line
            when regexp_matches(stack, '^\s*Traceback') then list_last(string_split(regexp_replace(stack, '\s+$', ''), chr(10)))
            else split_part(regexp_replace(stack, '^\s+', ''), chr(10), 1)
        end as first_line
    from scoped
),

normalized as (
    select
        *,
        left(
            regexp_replace(
                regexp_replace(
                    regexp_replace(regexp_replace(first_line, '^\s+|\s+$', '', 'g'), '''[^'']*''|"[^"]*"', '''…''', 'g'),
                    '0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b', '<hex>', 'g'
                ),
                '\d+', '<n>', 'g'
            ),
            200
        ) as title
    from parsed
),

grouped as (
    select
        *,
        left(
            md5(error_type || chr(10) || case when len(frames) > 0 then array_to_string(frames, chr(10)) else title end),
            16
        ) as fingerprint
    from normalized
),

final as (
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
    from grouped
    group by app, source, day, fingerprint
)

select app, source, day, fingerprint, error_type, title, events, people, first_seen_at, last_seen_at from final
