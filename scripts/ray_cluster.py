"""A local Ray cluster of several nodes on 127.0.0.1, for tests and benchmarks (the thing a user
runs on real hosts is ``ray start``, see docs/scale.md).

Each node is a ``ray start`` (its raylet, object store and workers) with its own CPUs and a bounded
object store; the first is the head (GCS on ``port``, the dashboard and state API on
``dashboard_port``). They share this machine, so two nodes of one CPU each on 2 cores is a
cluster of two one-core hosts.

Ray replaces a loopback node address with the machine's own address (``resolve_ip_for_localhost``)
when it may form a multi-node cluster, so ``--node-ip-address=127.0.0.1`` alone leaves it listening
and registering on the machine's network address. The nodes here are started through
:data:`_LAUNCHER`, which keeps ``127.0.0.1`` as given; a driver connecting to such a cluster needs
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in its environment (:data:`DRIVER_ENV`) for the same reason.
:meth:`RayCluster.stop` runs ``ray stop``, which ends every Ray node of this machine's user: one
local cluster at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: What a driver on this machine needs in its environment to connect to a cluster on 127.0.0.1.
DRIVER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_LAUNCHER = """
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""


@dataclass
class RayCluster:
    """A running local cluster: ``address`` (``127.0.0.1:<port>`` of the head's GCS, what
    ``EVENTLAKE_RAY_ADDRESS`` takes), ``dashboard`` (its HTTP address, where Ray's state API
    answers), ``nodes`` (how many) and ``temp_dir`` (the head's session files, removed at :meth:`stop`)."""

    address: str
    dashboard: str
    nodes: int
    temp_dir: Path

    def stop(self) -> None:
        """Stop the cluster (:func:`stop`: every Ray node of this user on this machine)."""
        stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def stop() -> None:
    """``ray stop --force``: every Ray node of this machine's user, this cluster's or not."""
    subprocess.run(
        [sys.executable, "-c", _LAUNCHER, "stop", "--force"],
        capture_output=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def start(
    nodes: int, port: int, dashboard_port: int, cpus: int = 1, object_store_bytes: int = 300_000_000
) -> RayCluster:
    """Start ``nodes`` Ray nodes of ``cpus`` CPUs and ``object_store_bytes`` of object store each on
    127.0.0.1, the head's GCS on ``port``; returns when every node has joined.

    Raises:
        RuntimeError: a node did not start (its ``ray start`` output is in the message).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="eventlake-ray-"))
    # Without the drivers' setting: with it, a second node refuses to join.
    env = {name: value for name, value in os.environ.items() if name not in DRIVER_ENV}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "DAFT_PROGRESS_BAR": "0"}
    common = [f"--num-cpus={cpus}", f"--object-store-memory={object_store_bytes}", "--disable-usage-stats"]
    head = [
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--temp-dir={temp_dir}",
        *common,
    ]
    worker = ["start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common]
    cluster = RayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", 0, temp_dir)
    try:
        for args in [head, *[worker] * (nodes - 1)]:
            subprocess.run(
                [sys.executable, "-c", _LAUNCHER, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
                stdin=subprocess.DEVNULL,
            )
            cluster.nodes += 1
    except subprocess.CalledProcessError as error:
        cluster.stop()
        raise RuntimeError(f"ray start {' '.join(error.cmd[3:])} failed:\n{error.stdout}{error.stderr}") from error
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main() -> None:
    """``python scripts/ray_cluster.py start [--nodes 2] [--port 6380] [--dashboard-port 8265]`` starts
    a local cluster and prints what to set; ``… stop`` stops it (every Ray node of this user)."""
    import argparse

    parser = argparse.ArgumentParser(description="A local Ray cluster on 127.0.0.1 (one machine: tests, trials).")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--nodes", type=int, default=2, help="nodes of --cpus CPUs each (default 2)")
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--object-store-mb", type=int, default=500, help="each node's object store (default 500)")
    parser.add_argument("--port", type=int, default=6380, help="the head's GCS port (default 6380; Redis has 6379)")
    parser.add_argument("--dashboard-port", type=int, default=8265)
    args = parser.parse_args()
    if args.action == "stop":
        stop()
        for folder in Path(tempfile.gettempdir()).glob("eventlake-ray-*"):
            shutil.rmtree(folder, ignore_errors=True)
        return
    cluster = start(args.nodes, args.port, args.dashboard_port, args.cpus, args.object_store_mb * 1_000_000)
    env = " ".join(f"{name}={value}" for name, value in DRIVER_ENV.items())
    sys.stdout.write(
        f"Ray: {cluster.nodes} node(s) on 127.0.0.1, head {cluster.address}, dashboard {cluster.dashboard}\n"
        f"Run the stack with it:  {env} EVENTLAKE_RAY_ADDRESS={cluster.address} make up\n"
        f"Stop it:  .venv/bin/python scripts/ray_cluster.py stop\n"
    )


if __name__ == "__main__":
    main()
