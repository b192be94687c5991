"""The local stack's shutdown (scripts/stack.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import stack  # noqa: E402


def test_a_second_ctrl_c_during_shutdown_does_not_leave_servers_running(tmp_path: Path) -> None:
    # Regression: a second SIGINT while stop() waited aborted it; uvicorn and Dagster kept running.
    (tmp_path / "logs").mkdir()
    services = stack.Stack(tmp_path)
    # A server that takes ~1 s to shut down on SIGINT, like Dagster's.
    ready = tmp_path / "ready"
    slow = (
        "import pathlib,signal,sys,time; signal.signal(signal.SIGINT, lambda *_: (time.sleep(1), sys.exit(0)));"
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    proc, _ = services.start("slow", [sys.executable, "-c", slow], dict(os.environ))
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    previous = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # the second Ctrl-C
    try:
        timer.start()
        services.stop()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert proc.poll() is not None and not stack.alive(proc.pid)


def test_waiting_for_gold_stops_with_the_error_of_a_failed_run(tmp_path: Path) -> None:
    # From the new-user trial: a misspelt key in a funnels file failed the run, and `make up`
    # waited silently for its 15-minute limit (the sensor never retries the same bronze version).
    import dagster as dg

    from pipelines.defs import pipeline_assets, pipeline_resources
    from warehouse.settings import Settings

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(stack.DAGSTER_YAML)
    started = datetime.now(UTC)
    check = stack.failed_run_check(home, started)
    check()  # no failed run yet

    funnels = tmp_path / "funnels.yaml"
    funnels.write_text("funnels:\n  - name: f\n    conversion_window: 1h\n    steps: [{name: a, evnt_types: [a]}]\n")
    settings = Settings(data_dir=tmp_path, funnels_path=funnels)
    result = dg.materialize(
        [asset for asset in pipeline_assets(settings).derived if dg.AssetKey("funnel_steps") in asset.keys],
        resources=pipeline_resources(settings),
        instance=dg.DagsterInstance.from_config(str(home)),
        raise_on_error=False,
    )
    assert not result.success
    with pytest.raises(stack.RunFailedError, match=r"(?s)funnel_steps: ValueError: invalid funnels in .*evnt_types"):
        check()
