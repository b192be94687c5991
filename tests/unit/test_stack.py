"""The local stack's shutdown (scripts/stack.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

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
