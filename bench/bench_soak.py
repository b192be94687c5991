"""Soak: the stack as ``make up`` runs it, under a steady load for an hour, with maintenance on short
intervals, one ``kill -9`` of an ingest worker and one of the hot path; does anything grow?

Usage::

    .venv/bin/python bench/bench_soak.py [--rate 2000] [--batch 100] [--minutes 60] [--window 5]
        [--kill-api-at 20] [--kill-hot-path-at 40]

The stack (``scripts/stack.py serve``: supervisord, the ingest API, Dagster's webserver and daemon with
the hot path and the maintenance schedule; no Superset) starts on a fresh temporary data folder with
free ports, and with maintenance shortened so that everything really runs: ``maintain_lake`` every
minute, files no version reads vacuumed once 3 minutes old (never past a consumer), log entries
kept 30 s, finished runs deleted after ``--run-retention-minutes`` (10). An open-loop client sends ``--rate`` events/s
(default 2,000) as requests of ``--batch`` native events (default 100), each at its slot whatever
the previous ones do (up to 256 in flight); a request that fails (refused while the API restarts,
a 503) is sent again, as SDKs do, and counted. At ``--kill-api-at`` minutes one of the API's worker
processes gets ``kill -9`` (uvicorn replaces it); at ``--kill-hot-path-at`` the hot path run's process does
(the bronze sensor starts another).

Every 10 s a sampler reads bronze's version, data files (per partition) and log files, the API's
``eventlake_group_commit_seconds`` histogram, the resident memory (RSS) of the API's processes and of
the hot path run's process, and the size of the Dagster storage; a poller reads the serving
snapshot's gold watermarks every 0.5 s (gold lag: from a request's slot until every incremental mart
covers the bronze version it was acknowledged with).

Prints (markdown) one row per ``--window`` minutes: ack p50/p95/p99 (ms, from the slot: queueing
included), mean commit ms, bronze versions and data files at the window's end, most files in one
partition, log files, gold lag p50/p95 (s), peak RSS of the API and of the hot path (MB), Dagster
storage (MB); then the targets (the last window against the third, minutes 55-60 against 10-15 by
default: within 1.2x on ack p95, commit ms, gold lag p95 and RSS; ack p99 <= 300 ms; gold lag p95
<= 60 s) and the final check: every acknowledged event in bronze, silver and gold exactly once.
The data folder is left in /tmp (its path is printed).

``--tiers`` (issue 26) adds the lake's lifecycle to the soak: 6% of the events are late, their
timestamps spread over ``--spread-days`` days (8) against a hot horizon of 3 days, so
``tier_lake`` (every 5 minutes) moves days to the cold root all along and late events reach days
already there; before the load, bronze gets three old received days of another
app (events 40 days old, a tenth of them invalid), so that bronze's and the quarantine's retention
(1 day) and the cold tier's (30 days) delete them during the soak; at ``--erase-at`` minutes
``eventlake-erase --user u7 --app soak`` (through the running Dagster) erases one user, whose events
keep coming and are dropped. The final check then reads silver across both tiers: every acknowledged
event of every other user exactly once in bronze, silver and served gold, none of u7's anywhere,
and the seeded days gone.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from bench_freshness import Stack, say, tree_of
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
APP = "soak"
SAMPLE_S = 10.0
MAX_ATTEMPTS = 240  # a request is sent again every 0.5 s for two minutes at most
HISTOGRAM = re.compile(r"^eventlake_group_commit_seconds_(sum|count) ([0-9.e+]+)$", re.MULTILINE)
STEPS_PID = re.compile(r"Executing steps in process \(pid: (\d+)\)")


@dataclass
class Request:
    slot: float  # wall clock (s): when it was due
    uuids: list[str]
    number: int = 0
    acked: float = float("nan")
    version: int = -1
    attempts: int = 0
    visible: float = float("nan")


@dataclass
class Sample:
    at: float
    version: int
    files: int
    max_partition_files: int
    log_files: int
    commit_sum: float
    commit_count: float
    api_rss_mb: float
    hot_path_rss_mb: float
    dagster_mb: float


@dataclass
class Soak:
    requests: list[Request] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    covered: list[tuple[float, int]] = field(default_factory=list)
    kills: list[tuple[float, str, list[int]]] = field(default_factory=list)
    failed_attempts: int = 0
    erasure: tuple[float, float, int, str] | None = None


def processes() -> dict[int, str]:
    """Command lines of this machine's processes, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def parent(pid: int) -> int:
    try:
        match = re.search(r"PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def api_pids(data_dir: Path) -> list[int]:
    """The ingest API's uvicorn master of the stack writing to ``data_dir`` (found by its environment),
    then its workers."""
    wanted = f"EVENTLAKE_DATA_DIR={data_dir}".encode()
    running = processes()
    masters = []
    for pid, cmd in running.items():
        if "ingest_worker:app" in cmd:
            try:
                if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    masters.append(pid)
            except OSError:
                continue
    return masters + [pid for pid in running if parent(pid) in masters]


def hot_path_pid(dagster_home: Path) -> int | None:
    """The process running the steps of the hot path run in progress, if any: the pid the in-process
    executor logs as "Executing steps in process (pid: N)" (the launcher's helper processes carry
    the run id on their command lines too, and the run process itself does not)."""
    import dagster as dg  # noqa: PLC0415 (only the sampler needs it)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="hot_path", statuses=[dg.DagsterRunStatus.STARTED]), limit=1)
        if not runs:
            return None
        events = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    for event in events:
        match = STEPS_PID.search(event.user_message or "")
        if match and Path(f"/proc/{match.group(1)}").exists():
            return int(match.group(1))
    return None


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def sample(stack: Stack, client: httpx.Client) -> Sample:
    bronze = f"{stack.data_dir}/lake/bronze/raw_events"
    dt = DeltaTable(bronze)
    actions = pa.table(dt.get_add_actions(flatten=True))
    counts = actions.group_by("partition.received_date").aggregate([([], "count_all")])
    commit_sum = commit_count = float("nan")
    try:
        metrics = dict(HISTOGRAM.findall(client.get("/metrics", timeout=5).text))
        commit_sum, commit_count = float(metrics["sum"]), float(metrics["count"])
    except (httpx.HTTPError, KeyError):
        pass
    hot = hot_path_pid(stack.data_dir / "dagster")
    return Sample(
        at=time.time(),
        version=dt.version(),
        files=actions.num_rows,
        max_partition_files=int(pc.max(counts["count_all"]).as_py() or 0) if counts.num_rows else 0,
        log_files=len(os.listdir(f"{bronze}/_delta_log")),
        commit_sum=commit_sum,
        commit_count=commit_count,
        api_rss_mb=sum(rss_mb(pid) for pid in api_pids(stack.data_dir)),
        hot_path_rss_mb=rss_mb(hot) if hot else 0.0,
        dagster_mb=dir_mb(stack.data_dir / "dagster"),
    )


#: ``--tiers``: the user erased during the soak, and the tier and retention settings.
ERASED_USER = "u7"
TIER_SETTINGS = {
    "EVENTLAKE_TIERING_CRON": "*/5 * * * *",
    "EVENTLAKE_SILVER_HOT_DAYS": "3",
    "EVENTLAKE_SILVER_COLD_DAYS": "30",
    "EVENTLAKE_BRONZE_TTL_DAYS": "1",
    "EVENTLAKE_QUARANTINE_TTL_DAYS": "1",
}
SEED_APP, SEED_DAYS, SEED_EVENTS = "soak-seed", (5, 4, 3), 2000


def user_of(index: int) -> str:
    """The user of the ``index``-th event of a request."""
    return f"u{index % 500}"


def days_back(index: int, number: int, spread_days: int) -> int:
    """How many days before now the ``index``-th event of request ``number`` happened: 0, but for
    every 20th event and the erased user's (6 in 100: late events, whose days cycle through the
    ``spread_days`` last days, half of them past the hot horizon)."""
    late = spread_days and (index % 20 == 0 or user_of(index) == ERASED_USER)
    return (number + index) % spread_days if late else 0


def body(uuids: list[str], app: str = APP, spread_days: int = 0, number: int = 0) -> list[dict[str, object]]:
    """Native events of request ``number``, one click each; ``spread_days``: see :func:`days_back`."""
    now = datetime.now(UTC)
    return [
        {
            "uuid": one,
            "timestamp": (now - timedelta(days=days_back(i, number, spread_days))).isoformat(),
            "app": app,
            "user": user_of(i),
            "page": f"https://soak.example.com/p/{i % 50}",
            "events": {"click": {"component": f"c{i % 20}"}},
        }
        for i, one in enumerate(uuids)
    ]


def run(stack: Stack, client: httpx.Client, args: argparse.Namespace) -> Soak:
    soak = Soak()
    done = threading.Event()
    lock = threading.Lock()

    def poll() -> None:
        while not done.is_set():
            soak.covered.append((time.time(), stack.covered()))
            time.sleep(0.5)

    def sampler() -> None:
        while not done.wait(SAMPLE_S):
            try:
                soak.samples.append(sample(stack, client))
            except Exception as exc:  # noqa: BLE001 (a sample lost to a restart is reported, not fatal)
                say(f"sample failed: {type(exc).__name__}: {exc}")

    def send(request: Request) -> None:
        payload = body(request.uuids, spread_days=args.spread_days if args.tiers else 0, number=request.number)
        while request.attempts < MAX_ATTEMPTS:
            request.attempts += 1
            try:
                response = client.post("/v1/events", json=payload, timeout=60)
                if response.status_code == 202:
                    request.version = int(response.json()["bronze_version"])
                    request.acked = time.time()
                    return
            except httpx.HTTPError:
                pass
            with lock:
                soak.failed_attempts += 1
            time.sleep(0.5)

    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=sampler, daemon=True)]
    for thread in threads:
        thread.start()
    interval = args.batch / args.rate
    kills = sorted(
        [(args.kill_api_at * 60, "ingest worker"), (args.kill_hot_path_at * 60, "hot path")]
        + ([(args.erase_at * 60, "erasure")] if args.tiers else []),
        key=lambda kill: kill[0],
    )
    say(f"load: {args.rate:,} events/s in requests of {args.batch} for {args.minutes:.0f} min")
    with ThreadPoolExecutor(256, thread_name_prefix="send") as pool:
        start, wall = time.monotonic(), time.time()
        number = 0
        while number * interval < args.minutes * 60:
            time.sleep(max(0.0, start + number * interval - time.monotonic()))
            elapsed = time.monotonic() - start
            if kills and elapsed >= kills[0][0] and kills[0][1] == "erasure":
                kills.pop(0)
                threading.Thread(target=erase, args=(stack, soak), daemon=True).start()
                say(f"eventlake-erase --user {ERASED_USER} --app {APP} at minute {elapsed / 60:.1f}")
            if kills and elapsed >= kills[0][0]:
                _, what = kills.pop(0)
                # One ingest worker (uvicorn replaces it), or the hot path run's process.
                pids = (
                    api_pids(stack.data_dir)[-1:]
                    if what == "ingest worker"
                    else [hot_path_pid(stack.data_dir / "dagster")]
                )
                pids = [pid for pid in pids if pid]
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                soak.kills.append((time.time(), what, pids))
                say(f"kill -9 of the {what} (pids {pids}) at minute {elapsed / 60:.1f}")
            uuids = [str(uuid.uuid4()) for _ in range(args.batch)]
            request = Request(slot=wall + number * interval, uuids=uuids, number=number)
            soak.requests.append(request)
            pool.submit(send, request)
            number += 1
            if number % int(60 / interval) == 0:
                say(f"minute {elapsed / 60:.0f}: {number * args.batch:,} events sent")
    last = max(r.version for r in soak.requests)
    deadline = time.monotonic() + args.drain_timeout
    while stack.covered() < last and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(1)
    done.set()
    for thread in threads:
        thread.join()
    for request in soak.requests:
        request.visible = next(
            (t for t, v in soak.covered if t >= request.acked and v >= request.version), float("nan")
        )
    return soak


def erase(stack: Stack, soak: Soak) -> None:
    """``eventlake-erase --user u7 --app soak`` against the running stack (its Dagster), timed."""
    started = time.time()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "eventlake-erase"), "--user", ERASED_USER, "--app", APP],
        env=stack.env,
        cwd=stack.tree.path,
        capture_output=True,
        text=True,
        check=False,
    )
    soak.erasure = (started, time.time(), done.returncode, (done.stdout + done.stderr).strip())
    say(f"erasure done in {time.time() - started:.0f} s (exit {done.returncode}): {done.stdout.strip()}")


def seed_old_days(stack: Stack) -> None:
    """Bronze rows of app ``soak-seed`` received 5, 4 and 3 days ago, events 40 days old, a tenth of
    them without any user or session id (quarantined): the retentions' work during the soak."""
    sys.path.insert(0, str(stack.tree.path))
    from warehouse.contract.native import explode_payload  # noqa: PLC0415
    from warehouse.contract.rows import RequestContext  # noqa: PLC0415
    from warehouse.lake.store import Lake  # noqa: PLC0415
    from warehouse.lake.tables import RAW_EVENTS  # noqa: PLC0415

    lake = Lake(str(stack.data_dir / "lake"))
    now = datetime.now(UTC)
    for days in SEED_DAYS:
        ctx = RequestContext(received_at=now - timedelta(days=days), user_agent="Mozilla/5.0", ip="192.0.2.1")
        rows = [
            row
            for i in range(SEED_EVENTS)
            for row in explode_payload(
                {
                    "uuid": str(uuid.uuid4()),
                    "timestamp": (now - timedelta(days=40)).isoformat(),
                    "app": SEED_APP,
                    **({} if i % 10 == 0 else {"user": user_of(i)}),
                    "events": {"click": {"component": "old"}},
                },
                ctx,
            )
        ]
        lake.append(RAW_EVENTS, pa.Table.from_pylist(rows, schema=RAW_EVENTS.schema))


def pct(values: list[float], q: int) -> float:
    values = [v for v in values if v == v]
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def windows(soak: Soak, start: float, args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    width = args.window * 60
    for index in range(int(args.minutes // args.window)):
        lo, hi = start + index * width, start + (index + 1) * width
        reqs = [r for r in soak.requests if lo <= r.slot < hi]
        samples = [s for s in soak.samples if lo <= s.at < hi]
        acks = [1000 * (r.acked - r.slot) for r in reqs]
        lags = [r.visible - r.slot for r in reqs]
        commit_ms = float("nan")
        if len(samples) > 1:
            # Counters restart with the API (a kill): sum the positive steps only.
            steps = [
                (b.commit_sum - a.commit_sum, b.commit_count - a.commit_count)
                for a, b in zip(samples, samples[1:], strict=False)
                if b.commit_count > a.commit_count
            ]
            if steps:
                commit_ms = 1000 * sum(s for s, _ in steps) / sum(c for _, c in steps)
        end = samples[-1] if samples else None
        rows.append(
            {
                "minutes": index * args.window,
                "ack_p50": pct(acks, 50),
                "ack_p95": pct(acks, 95),
                "ack_p99": pct(acks, 99),
                "commit_ms": commit_ms,
                "versions": end.version if end else float("nan"),
                "files": end.files if end else float("nan"),
                "partition_files": max((s.max_partition_files for s in samples), default=float("nan")),
                "log_files": max((s.log_files for s in samples), default=float("nan")),
                "lag_p50": pct(lags, 50),
                "lag_p95": pct(lags, 95),
                "api_rss": max((s.api_rss_mb for s in samples), default=float("nan")),
                "hot_rss": max((s.hot_path_rss_mb for s in samples), default=float("nan")),
                "dagster_mb": end.dagster_mb if end else float("nan"),
            }
        )
    return rows


def final_check(stack: Stack, soak: Soak, tiers: bool) -> dict[str, int]:
    """Acknowledged events missing from (or doubled in) bronze, silver (both tiers, read as every
    reader does) and the served gold; with ``tiers``, u7's events are expected nowhere and the seeded
    old days gone."""
    import duckdb  # noqa: PLC0415

    sys.path.insert(0, str(stack.tree.path))
    from warehouse.contract.rows import event_id_for  # noqa: PLC0415
    from warehouse.lake.tables import ERASURE_PENDING, EVENTS, RAW_EVENTS, REJECTED_EVENTS  # noqa: PLC0415
    from warehouse.lake.tiers import tiered_lake  # noqa: PLC0415

    pairs = [
        (event_id_for(one, "click"), user_of(i))
        for r in soak.requests
        if r.version >= 0
        for i, one in enumerate(r.uuids)
    ]
    erased = {event_id for event_id, user in pairs if tiers and user == ERASED_USER}
    acked = {event_id for event_id, _ in pairs} - erased
    lake = tiered_lake(str(stack.data_dir / "lake"), str(stack.data_dir / "cold"), 9, 512)
    waiting = lake.dataset(ERASURE_PENDING).to_table(columns=["event_id"])["event_id"]
    pending = set(waiting.to_pylist())
    result = {
        "acknowledged (not erased)": len(acked),
        "unacknowledged requests": sum(r.version < 0 for r in soak.requests),
    }
    for name, table in (("bronze", RAW_EVENTS), ("silver", EVENTS)):
        rows = lake.dataset(table).to_table(columns=["event_id", "app"])
        ids = rows.filter(pc.equal(rows["app"], APP))["event_id"]
        result[f"missing from {name}"] = len(acked - set(ids.to_pylist()))
        result[f"{name} rows - distinct"] = len(ids) - len(pc.unique(ids))
        if tiers:
            # Bronze's rows of the erasure's day leave it after the day (_state/erasure_pending).
            result[f"erased user's events in {name}"] = len(erased & set(ids.to_pylist()) - pending)
            result[f"seeded rows in {name}"] = pc.sum(pc.equal(rows["app"], SEED_APP)).as_py() or 0
    if tiers:
        result["erased user's bronze events waiting for the day's end"] = len(erased & pending)
        result["silver rows in the cold tier"] = lake.cold.dataset(EVENTS).count_rows() if lake.cold else 0
        result["seeded rows in the quarantine"] = lake.dataset(REJECTED_EVENTS).count_rows()
    con = duckdb.connect(str(stack.serving), read_only=True)
    row = con.execute("select sum(events) from daily_event_counts where app = ?", [APP]).fetchone()
    seeded = con.execute("select sum(events) from daily_event_counts where app = ?", [SEED_APP]).fetchone()
    con.close()
    result["served gold events - acknowledged"] = int(row[0] or 0) - len(acked) if row else -len(acked)
    if tiers:
        result["served gold events of the seeded days (kept)"] = int(seeded[0] or 0) if seeded else 0
    return result


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def report(rows: list[dict[str, float]], soak: Soak, check: dict[str, int], args: argparse.Namespace) -> None:
    header = [
        "minutes", "ack p50 ms", "p95", "p99", "commit ms", "bronze versions", "data files", "files/partition",
        "log files", "gold lag p50 s", "p95", "API RSS MB", "hot path RSS MB", "Dagster MB",
    ]  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        start = row["minutes"]
        cells = [f"{start:.0f}-{start + args.window:.0f}"]
        cells += [fmt(row[k]) for k in ("ack_p50", "ack_p95", "ack_p99", "commit_ms", "versions", "files")]
        cells += [fmt(row[k]) for k in ("partition_files", "log_files")]
        cells += [fmt(row["lag_p50"], 1), fmt(row["lag_p95"], 1)]
        cells += [fmt(row[k]) for k in ("api_rss", "hot_rss", "dagster_mb")]
        print(" | ".join(cells))
    if len(rows) >= 3:
        early, late = rows[min(2, len(rows) - 1)], rows[-1]
        print()
        print("target | early | late | late / early | status")
        print("--- | --- | --- | --- | ---")
        for key, label in (
            ("ack_p95", "ack p95 ms"),
            ("commit_ms", "commit ms"),
            ("lag_p95", "gold lag p95 s"),
            ("api_rss", "API RSS MB"),
            ("hot_rss", "hot path RSS MB"),
        ):
            ratio = late[key] / early[key] if early[key] else float("nan")
            status = "met" if ratio <= 1.2 else "missed"
            print(f"{label} within 1.2x | {fmt(early[key], 1)} | {fmt(late[key], 1)} | {ratio:.2f}x | {status}")
        worst_p99 = max(r["ack_p99"] for r in rows)
        worst_lag = max(r["lag_p95"] for r in rows)
        print(f"ack p99 <= 300 ms, every window | | {fmt(worst_p99)} | | {'met' if worst_p99 <= 300 else 'missed'}")
        print(
            f"gold lag p95 <= 60 s, every window | | {fmt(worst_lag, 1)} | | {'met' if worst_lag <= 60 else 'missed'}"
        )
    print()
    print(f"kills: {', '.join(f'{what} (pids {pids})' for _, what, pids in soak.kills) or 'none'}; ", end="")
    print(f"failed attempts (sent again): {soak.failed_attempts}")
    if soak.erasure:
        started, ended, code, output = soak.erasure
        print(f"erasure of {ERASED_USER}: {ended - started:.0f} s, exit {code}: {' / '.join(output.splitlines())}")
    print(" · ".join(f"{key}: {value:,}" for key, value in check.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--minutes", type=float, default=60, help="how long the load runs")
    parser.add_argument("--window", type=float, default=5, help="minutes per table row")
    parser.add_argument("--kill-api-at", type=float, default=20, help="minute of an ingest worker's kill -9")
    parser.add_argument("--kill-hot-path-at", type=float, default=40, help="minute of the hot path's kill -9")
    parser.add_argument("--run-retention-minutes", type=float, default=10, help="Dagster runs kept this long")
    parser.add_argument("--drain-timeout", type=float, default=600, help="seconds to wait for gold afterwards")
    parser.add_argument("--tiers", action="store_true", help="tier moves, retention and an erasure during the soak")
    parser.add_argument("--spread-days", type=int, default=8, help="--tiers: event timestamps over this many days")
    parser.add_argument("--erase-at", type=float, default=30, help="--tiers: minute of the erasure")
    args = parser.parse_args()
    if args.tiers:
        os.environ.update(TIER_SETTINGS)

    os.environ.update(
        {
            "EVENTLAKE_MAINTENANCE_CRON": "* * * * *",
            "EVENTLAKE_MAINTENANCE_RETENTION_H": "0.05",  # 3 min: longer than any append
            "EVENTLAKE_LOG_RETENTION_MINUTES": "0.5",
            "EVENTLAKE_RUN_RETENTION_DAYS": str(args.run_retention_minutes / 1440),
        }
    )
    tree = tree_of(ROOT, "this")
    stack = Stack(tree)
    say(f"soak of {tree.commit}; data folder {stack.data_dir}")
    try:
        client = stack.client()
        # The first event creates the tables (another app: not counted).
        client.post("/v1/events", json=body([str(uuid.uuid4())], "soak-warm-up")).raise_for_status()
        if args.tiers:
            seed_old_days(stack)
        soak = run(stack, client, args)
        start = soak.requests[0].slot
        rows = windows(soak, start, args)
    finally:
        stack.stop()
    check = final_check(stack, soak, args.tiers)  # stopped: no move in flight changes the tables meanwhile
    print(f"# soak of {tree.commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {' '.join(sys.argv[1:]) or 'defaults'}")
    report(rows, soak, check, args)
    say(f"data folder left in {stack.data_dir}")


if __name__ == "__main__":
    main()
