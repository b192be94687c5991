"""Bronze → silver throughput and per-stage cost, with validation and scrubbing each switched off.

Writes N synthetic bronze events (2,000 users each on a public IPv4 address, 300 distinct user
agents, 5% bots, 1% invalid,
URLs with query strings, nested properties: a product object with a tag list, a cart array of
objects, error events with stack traces) to a temporary lake, then runs the silver step of
``pipelines/silver.py`` stage by stage three times on the same bronze, each into a fresh silver:

* ``full``: what the pipeline runs with its defaults (consistency columns, Great Expectations
  split, scrub + pseudonymize + enrich, then dedup + append while the silver suite checks the
  rows; decode and the property scrub shared with one worker process per extra core, as for
  any batch of 50k rows or more);
* ``single_process``: the same in one process (``EVENTLAKE_SILVER_WORKERS=1``);
* ``no_validation``: every row taken as valid (no consistency columns, no GE, no silver suite;
  the dedup anti-join scans silver for the ids the conflict check would have read);
* ``no_scrub``: scrub rules empty and no pseudonymization.

Prints µs per event per stage, events/s per variant and each variant's time as a ratio of
``full``; gold (DAU + MAU refresh) is timed once, separately, and so is the IP → country lookup
inside ``scrub_enrich`` (2,000 clients, and every event a new client: µs per event). Usage:
``.venv/bin/python bench/bench_silver.py [--events 1000000]``
"""

import sys
from pathlib import Path

# The benchmark lives in bench/silver_step.py: the silver step's worker processes are spawned and
# re-import this script, which therefore imports nothing heavy outside this guard.
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from silver_step import main

    main()
