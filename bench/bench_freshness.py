"""Event-to-gold latency under steady load and for a single event, with where the time goes; optionally
this tree side by side with a baseline checkout.

Usage::

    .venv/bin/python bench/bench_freshness.py [--baseline ../wt-base] [--rates 1000,5000] [--seconds 120]
        [--idle-wait 20] [--no-single]

Per tree (with ``--baseline PATH``: first the baseline checkout, then this one, one after the other,
never both at once) the bench starts the stack as ``make up`` does, but empty and without Superset
(``PATH/scripts/stack.py serve``, cwd the tree, a fresh temporary data folder, free ports,
``PYTHONPATH`` = the tree: the shared venv's editable install points at another checkout), warms it
up with one event (the first run creates the tables), then for each rate of ``--rates`` (default
1,000 events/s; ``--rate N`` is ``--rates N``) POSTs a batch of rate/10 native payloads every 100 ms,
each event with a known id, for ``--seconds`` (default 120), and waits until gold covers all of it
before the next rate. The batches are sent from a thread pool that grows when every sender is busy
(``--max-senders``, default 64), so a slow acknowledgement delays neither the next batch nor the
load; the load table shows whether the client kept up. A poller reads the serving snapshot every
250 ms; an event counts in gold once every incremental mart's watermark in the snapshot covers the
bronze version its POST was acknowledged with (the version that holds it). The incremental marts are
those of the tree's own ``warehouse/marts/*/mart.yaml`` (every kind but ``rebuild`` and ``quality``).
Latency = that moment − the batch's 100 ms slot (when it was sent).

Then (unless ``--no-single``), three times: once gold covers everything and nothing was sent for
``--idle-wait`` s (default 20), one event is POSTed; the bench polls the serving snapshot every 100 ms
and, meanwhile, runs the tree's ``eventlake-status`` CLI again and again (one call at a time, as a
user would) until its line "served gold covers bronze version N" reaches the event's version. Each
call is a Python process with the pipeline's imports (seconds of CPU): on 2 cores it competes with
the micro-batch, and the snapshot times of this phase include that. The stack is then stopped
(SIGINT, waited for) and its Dagster instance read. The data folders are left in /tmp for
inspection (their paths are printed).

Tables (markdown, on stdout; progress on stderr, after a header with the date, the commits and the
command line), one column group per tree, labelled by its ``git rev-parse --short HEAD`` (prefixed
with ``baseline``/``this`` when both are the same commit):

- load: events sent and acknowledged, the achieved rate (acknowledged events / time from the first
  send to the last acknowledgement), the POST latency, how late batches started after their 100 ms
  slot (the client falling behind), the most concurrent POSTs, and how long gold took to cover the
  load after it ended;
- event → gold (s): p50/p95/max/mean of the latency and its parts, from the ``ingest_to_gold`` run
  that carried each batch (the first whose silver step started after the batch's acknowledgement):
  ``commit`` (the batch's slot until the group commit acknowledged it), ``sensor`` (ack until that
  run was created), ``run start`` (until its silver step started: the run queue and the run's start),
  ``compute`` (silver step start → serving snapshot step start: silver, user attributes and gold),
  ``publish`` (the serving snapshot step) and ``observe`` (until the poller saw it); with a baseline,
  the ratio this / baseline of the total's p50 and p95;
- steps (s): over the ``ingest_to_gold`` runs whose silver step started during the rate's load
  (its first slot → its last acknowledgement), p50/p95/mean of the run's duration (run record
  start → end) and of each step's (step stats start → end); for a step that materializes several
  assets (a multi-asset such as ``gold_marts``), its assets' ``refresh_s`` metadata
  (``  <asset> (in step)``) and the sum per run of its check evaluations' ``validation_s`` metadata
  (``  checks (in step)``) when they report them; then the number of runs and the p50 of Dagster
  event-log entries per run. Rows are the union over the trees, "-" where a tree has no such row;
- single event (s): per probe, the time from the POST until the serving snapshot covered it, until
  the first ``eventlake-status`` run that showed it, and the median duration of one
  ``eventlake-status`` call; then the max of each.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUN_JOB = "ingest_to_gold"
SILVER_STEP = "silver_events"
SERVING_STEP = "serving_snapshot"
PARTS = ("commit", "sensor", "run start", "compute", "publish", "observe")
STATUS_LINE = re.compile(r"served gold covers bronze version (\d+|None)")
PROBES = 3
CHECKS = "\0checks"  # the row key of a step's checks (sorts after its assets)


@dataclass
class Tree:
    role: str  # "baseline" or "this"
    path: Path
    commit: str
    label: str
    marts: list[str]  # its incremental marts


@dataclass
class Batch:
    scheduled: float  # wall clock, s since epoch: the batch's 100 ms slot
    size: int
    sent: float = 0.0  # when a sender started the POST
    acked: float = 0.0
    version: int = -1
    visible: float = float("nan")
    error: str = ""


@dataclass
class Load:
    rate: int
    batches: list[Batch]
    start: float  # wall clock: the first slot
    end: float  # the last acknowledgement
    peak_senders: int
    drained_s: float  # from the end of the load until gold covered it
    drained: bool


@dataclass
class Probe:
    to_snapshot: float
    to_status: float
    status_calls: list[float]


@dataclass
class Run:
    run_id: str
    created: float
    start: float | None
    end: float | None
    steps: dict[str, tuple[float, float | None]]  # step key -> (start, end)
    log_entries: int
    refresh_s: dict[str, dict[str, float]]  # multi-asset step -> asset -> refresh_s
    validation_s: dict[str, float]  # multi-asset step -> sum of its checks' validation_s


@dataclass
class Result:
    tree: Tree
    data_dir: Path
    loads: list[Load] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def say(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True).stdout.strip()


def incremental_marts(tree: Path) -> list[str]:
    """The tree's incremental marts: every ``warehouse/marts/<name>/mart.yaml`` but ``kind: rebuild``/``quality``."""
    marts = []
    for spec_file in sorted((tree / "warehouse" / "marts").glob("*/mart.yaml")):
        spec = yaml.safe_load(spec_file.read_text()) or {}
        if spec.get("kind", "incremental") not in ("rebuild", "quality"):
            marts.append(spec_file.parent.name)
    if not marts:
        raise RuntimeError(f"no incremental mart under {tree / 'warehouse' / 'marts'}")
    return marts


def covered_version(serving: Path, marts: Sequence[str]) -> int:
    """The bronze version every mart of ``marts`` covers in the served snapshot (-1 if not all yet)."""
    if not serving.exists():
        return -1
    try:
        con = duckdb.connect(str(serving), read_only=True)
    except duckdb.Error:
        return -1
    try:
        row = con.execute(
            "select count(*), min(bronze_version) from gold_watermarks where list_contains(?, mart)", [list(marts)]
        ).fetchone()
    except duckdb.Error:  # a snapshot without gold_watermarks yet
        return -1
    finally:
        con.close()
    return int(row[1]) if row and row[0] == len(marts) else -1


def payloads(count: int, tag: str) -> list[dict[str, object]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "uuid": f"{tag}-{i}-{uuid.uuid4()}",
            "timestamp": now,
            "app": "freshness",
            "user": f"u{i % 500}",
            "page": f"https://bench.example.com/p/{i % 50}",
            "events": {"click": {"component": f"c{i % 20}"}},
        }
        for i in range(count)
    ]


def pct(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


class Stack:
    """One tree's stack on a fresh data folder; :meth:`stop` sends SIGINT and waits."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"bench_freshness_{tree.role}_"))
        self.serving = self.data_dir / "serving" / "serving.duckdb"
        api_port, dagster_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "EVENTLAKE_DATA_DIR": str(self.data_dir),
            "EVENTLAKE_SUPERSET": "0",
            "EVENTLAKE_INGEST_PORT": str(api_port),
            "EVENTLAKE_DAGSTER_PORT": str(dagster_port),
            # The venv's editable install maps the packages to one checkout: the tree's come first.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tree.path), os.environ.get("PYTHONPATH")])),
        }
        self.api = f"http://127.0.0.1:{api_port}"
        self.log = (self.data_dir / "stack.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(tree.path / "scripts" / "stack.py"), "serve"],
            cwd=tree.path,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )

    def client(self, timeout_s: float = 300) -> httpx.Client:
        """Wait until the API answers and the Dagster daemon started; a client with the write key."""
        key_file = self.data_dir / "local_write_key"
        deadline = time.monotonic() + timeout_s
        while not (key_file.exists() and (self.data_dir / "logs" / "dagster_daemon.log").exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not start; see {self.data_dir / 'stack.log'}")
            time.sleep(0.5)
        client = httpx.Client(base_url=self.api, headers={"X-Write-Key": key_file.read_text().strip()}, timeout=60)
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    return client
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ingest API did not answer; see {self.data_dir / 'logs'}")
            time.sleep(0.5)

    def covered(self) -> int:
        return covered_version(self.serving, self.tree.marts)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def post(client: httpx.Client, events: list[dict[str, object]]) -> int:
    response = client.post("/v1/events", json=events)
    response.raise_for_status()
    return int(response.json()["bronze_version"])


def load(stack: Stack, client: httpx.Client, rate: int, args: argparse.Namespace) -> Load:
    """``rate`` events/s for ``args.seconds``, then wait until gold covers it (``args.drain_timeout``)."""
    size = max(1, rate // 10)
    batches: list[Batch] = []
    polls: list[tuple[float, int]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            polls.append((time.time(), stack.covered()))
            time.sleep(0.25)

    lock = threading.Lock()
    busy = [0, 0]  # senders busy now, most at once

    def send(batch: Batch, number: int) -> None:
        with lock:
            busy[0] += 1
            busy[1] = max(busy)
        batch.sent = time.time()
        try:
            batch.version = post(client, payloads(batch.size, f"r{rate}b{number}"))
            batch.acked = time.time()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            batch.error = f"{type(exc).__name__}: {exc}"
        finally:
            with lock:
                busy[0] -= 1

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    say(f"{stack.tree.label}: load {rate:,} events/s for {args.seconds:.0f} s")
    # A pool grows only when no thread is idle: up to max_senders POSTs in flight, none waits for a sender.
    with ThreadPoolExecutor(args.max_senders, thread_name_prefix="send") as pool:
        start, wall = time.monotonic(), time.time()
        number = 0
        while number * 0.1 < args.seconds:
            time.sleep(max(0.0, start + number * 0.1 - time.monotonic()))
            batch = Batch(scheduled=wall + number * 0.1, size=size)
            batches.append(batch)
            pool.submit(send, batch, number)
            number += 1
    acked = [b for b in batches if not b.error]
    end = max((b.acked for b in acked), default=time.time())
    last = max((b.version for b in acked), default=-1)
    drained = wait_until(lambda: stack.covered() >= last, args.drain_timeout, 0.25)
    drained_s = time.time() - end
    time.sleep(0.5)
    done.set()
    poller.join()
    if not drained:
        say(f"{stack.tree.label}: gold did not cover bronze version {last} within {args.drain_timeout:.0f} s")
    late = pct([b.sent - b.scheduled for b in batches if b.sent], 95)
    if late > 0.1 or busy[1] >= args.max_senders:
        say(
            f"{stack.tree.label}: the client fell behind: batches started {late:.2f} s after their slot (p95), "
            f"{busy[1]} POSTs in flight at most"
        )
    for batch in acked:
        batch.visible = next((t for t, v in polls if t >= batch.acked and v >= batch.version), float("nan"))
    return Load(rate, batches, wall, end, busy[1], drained_s, drained)


def status_covered(stack: Stack) -> tuple[int, float, str]:
    """Run the tree's ``eventlake-status`` once: the bronze version it says served gold covers (-1 if
    none or no answer), how long the call took, and what it printed."""
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "eventlake-status")],
        cwd=stack.tree.path,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    found = STATUS_LINE.search(done.stdout)
    if found is None:
        if done.returncode == 0:
            raise RuntimeError(f"eventlake-status printed no 'served gold covers' line:\n{output}")
        return -1, elapsed, output
    return (int(found.group(1)) if found.group(1) != "None" else -1), elapsed, output


def probe(stack: Stack, client: httpx.Client, args: argparse.Namespace) -> Probe:
    """POST one event; time until the snapshot and until ``eventlake-status`` show it."""
    seen: list[float] = []
    sent = time.time()
    version = post(client, payloads(1, "single"))

    def watch() -> None:
        if wait_until(lambda: stack.covered() >= version, args.drain_timeout, 0.1):
            seen.append(time.time())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    calls: list[float] = []
    deadline = time.monotonic() + args.drain_timeout
    while True:
        covered, elapsed, output = status_covered(stack)
        calls.append(elapsed)
        if covered >= version:
            shown = time.time()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"eventlake-status did not show bronze version {version} in {args.drain_timeout:.0f} s; "
                f"it last printed:\n{output}"
            )
    watcher.join()
    if not seen:
        raise RuntimeError(f"the serving snapshot did not cover bronze version {version}")
    return Probe(seen[0] - sent, shown - sent, calls)


def seconds_of(value: dg.MetadataValue | None) -> float | None:
    """A float (or int) metadata value's number, else ``None``."""
    if isinstance(value, dg.FloatMetadataValue | dg.IntMetadataValue) and value.value is not None:
        return float(value.value)
    return None


def dagster_runs(dagster_home: Path) -> list[Run]:
    """Every ``ingest_to_gold`` run of the instance with a silver step, by its silver step's start."""
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = []
    try:
        for record in instance.get_run_records(dg.RunsFilter(job_name=RUN_JOB)):
            run_id = record.dagster_run.run_id
            steps = {
                s.step_key: (s.start_time, s.end_time)
                for s in instance.get_run_step_stats(run_id)
                if s.start_time is not None
            }
            if SILVER_STEP not in steps:
                continue
            logs = instance.all_logs(run_id)
            materialized: dict[str, set[str]] = defaultdict(set)
            refresh: dict[str, dict[str, float]] = defaultdict(dict)
            checks: dict[str, float] = defaultdict(float)
            for entry in logs:
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    materialization = event.step_materialization_data.materialization
                    asset = materialization.asset_key.to_user_string()
                    materialized[event.step_key].add(asset)
                    seconds = seconds_of(materialization.metadata.get("refresh_s"))
                    if seconds is not None:
                        refresh[event.step_key][asset] = seconds
                elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    seconds = seconds_of(event.asset_check_evaluation_data.metadata.get("validation_s"))
                    if seconds is not None:
                        checks[event.step_key] += seconds
            multi = {step for step, assets in materialized.items() if len(assets) > 1}
            runs.append(
                Run(
                    run_id,
                    record.create_timestamp.timestamp(),
                    record.start_time,
                    record.end_time,
                    steps,
                    len(logs),
                    {step: values for step, values in refresh.items() if step in multi},
                    {step: total for step, total in checks.items() if step in multi},
                )
            )
    finally:
        instance.dispose()
    runs.sort(key=lambda run: run.steps[SILVER_STEP][0])
    return runs


def measure(tree: Tree, args: argparse.Namespace) -> Result:
    """Start the tree's stack, run every rate's load and the single-event probes, stop it, read its runs."""
    stack = Stack(tree)
    result = Result(tree, stack.data_dir)
    say(f"{tree.label} ({tree.path}): starting the stack in {stack.data_dir}")
    try:
        client = stack.client()
        warm = post(client, payloads(1, "warm"))
        say(f"{tree.label}: stack up; warming up (the first run creates the tables)")
        if not wait_until(lambda: stack.covered() >= warm, args.drain_timeout, 0.5):
            raise RuntimeError(f"gold did not cover the warm-up event; see {stack.data_dir / 'logs'}")
        for rate in args.rates:
            result.loads.append(load(stack, client, rate, args))
        quiet_since = time.monotonic()  # gold covers everything sent
        for number in range(PROBES if args.single else 0):
            pause = args.idle_wait - (time.monotonic() - quiet_since)
            say(f"{tree.label}: single event {number + 1}/{PROBES} after {max(0.0, pause):.0f} s more idle")
            time.sleep(max(0.0, pause))
            result.probes.append(probe(stack, client, args))
            quiet_since = time.monotonic()
        client.close()
    finally:
        say(f"{tree.label}: stopping the stack")
        stack.stop()
    result.runs = dagster_runs(stack.data_dir / "dagster")
    return result


# Tables


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "mean": None}
    return {"p50": pct(values, 50), "p95": pct(values, 95), "max": max(values), "mean": statistics.mean(values)}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def latencies(load_: Load, runs: Sequence[Run]) -> tuple[dict[str, list[float]], int]:
    """Each acknowledged batch's latency and its parts (see the module doc), and how many batches have none."""
    parts: dict[str, list[float]] = {name: [] for name in ("**total**", *PARTS)}
    carriers = [run for run in runs if SERVING_STEP in run.steps and run.steps[SERVING_STEP][1] is not None]
    missing = 0
    for batch in load_.batches:
        run = next((r for r in carriers if r.steps[SILVER_STEP][0] >= batch.acked), None)
        if batch.error or run is None or batch.visible != batch.visible:  # failed, no carrying run, or not seen
            missing += 1
            continue
        silver_start = run.steps[SILVER_STEP][0]
        serving_start, serving_end = run.steps[SERVING_STEP]
        assert serving_end is not None
        parts["**total**"].append(batch.visible - batch.scheduled)
        parts["commit"].append(batch.acked - batch.scheduled)
        parts["sensor"].append(max(0.0, run.created - batch.acked))
        parts["run start"].append(silver_start - max(run.created, batch.acked))
        parts["compute"].append(serving_start - silver_start)
        parts["publish"].append(serving_end - serving_start)
        parts["observe"].append(batch.visible - serving_end)
    return parts, missing


def load_runs(load_: Load, runs: Sequence[Run]) -> list[Run]:
    """The runs whose silver step started during the load window (first slot → last acknowledgement)."""
    return [run for run in runs if load_.start <= run.steps[SILVER_STEP][0] <= load_.end]


def step_rows(runs: Sequence[Run]) -> dict[tuple[str, str], list[float]]:
    """Durations per row key: ("run", ""), (step, ""), (step, asset) for in-step refreshes, (step, CHECKS)."""
    rows: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        if run.start is not None and run.end is not None:
            rows[("run", "")].append(run.end - run.start)
        for step, (start, end) in run.steps.items():
            if end is not None:
                rows[(step, "")].append(end - start)
        for step, assets in run.refresh_s.items():
            for asset, seconds in assets.items():
                rows[(step, asset)].append(seconds)
        for step, seconds in run.validation_s.items():
            rows[(step, CHECKS)].append(seconds)
    return rows


def step_order(runs: Sequence[Run]) -> dict[str, float]:
    """Each step's mean start offset within its run (orders the rows)."""
    offsets: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        first = min(start for start, _ in run.steps.values())
        for step, (start, _) in run.steps.items():
            offsets[step].append(start - first)
    return {step: statistics.mean(values) for step, values in offsets.items()}


def row_name(key: tuple[str, str]) -> str:
    step, sub = key
    if step == "run":
        return "run (record start → end)"
    if not sub:
        return step
    return "  checks (in step)" if sub == CHECKS else f"  {sub} (in step)"


def ratio(this: float | None, base: float | None) -> str:
    return "-" if this is None or base is None or base == 0 else f"{this / base:.2f}"


def load_table(labels: Sequence[str], loads: Sequence[Load], windows: Sequence[list[Run]]) -> None:
    acked = [sum(b.size for b in ld.batches if not b.error) for ld in loads]
    post_s = [stats([b.acked - b.sent for b in ld.batches if not b.error]) for ld in loads]
    late = [stats([b.sent - b.scheduled for b in ld.batches if b.sent]) for ld in loads]
    rows = [
        [
            "events sent (acknowledged)",
            *(f"{sum(b.size for b in ld.batches):,} ({a:,})" for ld, a in zip(loads, acked, strict=True)),
        ],
        [
            "achieved rate (acknowledged / first send → last ack), events/s",
            *(f"{a / max(ld.end - ld.start, 1e-9):,.0f}" for a, ld in zip(acked, loads, strict=True)),
        ],
        ["POST latency p50 / p95 (s)", *(f"{fmt(v['p50'], 2)} / {fmt(v['p95'], 2)}" for v in post_s)],
        ["batch start after its slot p95 / max (s)", *(f"{fmt(v['p95'], 2)} / {fmt(v['max'], 2)}" for v in late)],
        ["most POSTs in flight", *(str(ld.peak_senders) for ld in loads)],
        ["micro-batch runs started during the load", *(str(len(w)) for w in windows)],
        [
            "gold covers the load after its end (s)",
            *(fmt(ld.drained_s) + ("" if ld.drained else " (timeout)") for ld in loads),
        ],
    ]
    table(["load", *labels], rows)


def latency_table(labels: Sequence[str], loads: Sequence[Load], runs: Sequence[Sequence[Run]]) -> None:
    found = [latencies(ld, r) for ld, r in zip(loads, runs, strict=True)]
    header = ["event → gold (s)", *(f"{label} {k}" for label in labels for k in ("p50", "p95", "max", "mean"))]
    if len(labels) > 1:
        header += ["p50 this / base", "p95 this / base"]
    rows = []
    for name in ("**total**", *PARTS):
        values = [stats(parts[name]) for parts, _ in found]
        row = [name, *(fmt(v[k]) for v in values for k in ("p50", "p95", "max", "mean"))]
        if len(labels) > 1:
            first, last = values[0], values[-1]
            total = name == "**total**"
            row += [ratio(last["p50"], first["p50"]), ratio(last["p95"], first["p95"])] if total else ["", ""]
        rows.append(row)
    table(header, rows)
    for label, (_, missing) in zip(labels, found, strict=True):
        if missing:
            print(f"{label}: {missing} batches failed or were not seen in gold within the drain timeout\n")


def step_table(labels: Sequence[str], windows: Sequence[list[Run]]) -> None:
    durations = [step_rows(w) for w in windows]
    order: dict[str, float] = {}
    for w in windows:
        for step, offset in step_order(w).items():
            order[step] = min(offset, order.get(step, offset))
    keys = sorted(
        {key for d in durations for key in d},
        key=lambda k: (k[0] != "run", order.get(k[0], 0.0), k[0], k[1] != "", k[1] == CHECKS, k[1]),
    )
    header = ["steps (s)", *(f"{label} {k}" for label in labels for k in ("p50", "p95", "mean"))]
    rows = []
    for key in keys:
        values = [stats(d.get(key, [])) for d in durations]
        rows.append([row_name(key), *(fmt(v[k], 2) for v in values for k in ("p50", "p95", "mean"))])
    rows.append(["micro-batch runs", *(c for w in windows for c in (str(len(w)), "", ""))])
    entries = [stats([run.log_entries for run in w])["p50"] for w in windows]
    rows.append(["event-log entries per run (p50)", *(c for e in entries for c in (fmt(e, 0), "", ""))])
    table(header, rows)


def single_table(labels: Sequence[str], results: Sequence[Result]) -> None:
    header = ["single event (s)"]
    for label in labels:
        header += [f"{label} → snapshot", f"{label} → eventlake-status", f"{label} one status call"]
    rows = []
    for index in range(PROBES):
        row = [f"probe {index + 1}"]
        for result in results:
            p = result.probes[index]
            row += [fmt(p.to_snapshot), fmt(p.to_status), fmt(statistics.median(p.status_calls))]
        rows.append(row)
    row = ["**max**"]
    for result in results:
        row += [
            fmt(max(p.to_snapshot for p in result.probes)),
            fmt(max(p.to_status for p in result.probes)),
            fmt(max(max(p.status_calls) for p in result.probes)),
        ]
    rows.append(row)
    table(header, rows)


def report(results: Sequence[Result], args: argparse.Namespace) -> None:
    labels = [r.tree.label for r in results]
    print(f"## Freshness, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    for result in results:
        tree = result.tree
        print(
            f"- {tree.role}: `{tree.path}` at `{tree.commit}`"
            f" ({len(tree.marts)} incremental marts); data folder `{result.data_dir}`"
        )
    print(f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`")
    print(f"- machine: {os.cpu_count()} cores; dagster {dg.__version__}\n")
    for index, rate in enumerate(args.rates):
        loads = [r.loads[index] for r in results]
        windows = [load_runs(ld, r.runs) for ld, r in zip(loads, results, strict=True)]
        print(f"### {rate:,} events/s for {args.seconds:.0f} s\n")
        load_table(labels, loads, windows)
        latency_table(labels, loads, [r.runs for r in results])
        step_table(labels, windows)
    if args.single:
        print(f"### A single event after {args.idle_wait:.0f} s idle\n")
        single_table(labels, results)


def tree_of(path: Path, role: str) -> Tree:
    path = path.resolve()
    if not (path / "scripts" / "stack.py").exists():
        raise SystemExit(f"{path} is not a checkout of eventlake (no scripts/stack.py)")
    commit = git(path, "rev-parse", "--short", "HEAD")
    return Tree(role, path, commit, commit, incremental_marts(path))


def parse_rates(text: str) -> list[int]:
    rates = [int(part) for part in text.split(",") if part.strip()]
    if not rates or any(rate < 10 for rate in rates):
        raise argparse.ArgumentTypeError("rates are events per second, at least 10 each")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout of the repo, measured first")
    parser.add_argument("--rates", type=parse_rates, default=[1000], help="events per second, comma-separated")
    parser.add_argument(
        "--rate", type=parse_rates, dest="rates", default=argparse.SUPPRESS, help="one rate (the same as --rates N)"
    )
    parser.add_argument("--seconds", type=float, default=120, help="how long to keep each rate's load on")
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds to wait for gold afterwards")
    parser.add_argument("--max-senders", type=int, default=64, help="most POSTs in flight (the pool grows to it)")
    parser.add_argument("--single", action=argparse.BooleanOptionalAction, default=True, help="single-event probes")
    parser.add_argument("--idle-wait", type=float, default=20, help="seconds idle before each single event")
    args = parser.parse_args()

    trees = [tree_of(args.baseline, "baseline")] if args.baseline else []
    trees.append(tree_of(ROOT, "this"))
    if len(trees) > 1 and trees[0].label == trees[1].label:
        for tree in trees:
            tree.label = f"{tree.role} {tree.commit}"
    results = [measure(tree, args) for tree in trees]  # one stack at a time
    report(results, args)
    for result in results:
        say(f"{result.tree.label}: data folder left in {result.data_dir}")


if __name__ == "__main__":
    main()
