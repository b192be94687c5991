-- error_summary_facts(): one row per error event of the refreshed days with its group (fingerprint,
-- error_type, title; the definition is insert.sql's header), person and time. One definition for
-- insert.sql, maintain.sql and append.sql. Inputs: people_events (bots excluded), refresh_days.
create or replace temp macro error_summary_facts() as table
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
    where event_type in ('errors', 'error')
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
)

select app, source, day, fingerprint, error_type, title, person_id, "timestamp" from grouped;
