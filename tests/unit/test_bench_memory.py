"""The backlog benchmark's peak memory is the measured process's own, not its parent's."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

CHILD = """
import resource, sys
sys.path.insert(0, {bench!r})
from bench_silver_backlog import peak_rss_mib
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak_rss_mib())
"""


def test_a_child_of_a_large_parent_reports_its_own_peak() -> None:
    # Regression: the 10M-event backlog "peaked" at 21 GB in a child that never held more than a
    # few: Linux carries ru_maxrss over execve, so the child reported the generator's size.
    held = bytearray(600 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page: resident
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(bench=str(ROOT / "bench"))], capture_output=True, text=True, check=True
    )
    inherited, own = map(float, out.stdout.split())
    assert inherited > 600  # what the old measure said
    assert own < 300  # the child: an interpreter and Polars/Arrow imports
    del held
