"""A real S3 server on 127.0.0.1: a single-node Ceph cluster (one monitor, one OSD) with its RADOS
gateway (RGW), from Debian's packages (``radosgw ceph-mon ceph-osd``, Ceph 16 "pacific").

What a single node needs (``../shared/notes/scale.md``, tried here): a monitor and an OSD even for
the gateway; pools of size 1 on one OSD (``osd_pool_default_size = 1``, ``mon_allow_pool_size_one``,
``osd_crush_chooseleaf_type = 0``); no cephx (``auth_* = none``, and ``ms_mon_client_mode = crc`` for
the gateway, which otherwise insists on it); messenger v2 on the monitor (with v1 only, the OSD
never came up). ``memstore`` keeps objects in RAM (tests); ``bluestore`` on a file keeps them across
a restart. Every daemon writes its pid file under the data folder's ``run/``; :meth:`S3Server.stop`
stops them by those pids.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: The Debian packages the server needs (installed by ``make packages`` when missing: ``scripts/debian_packages.sh``).
PACKAGES = ("radosgw", "ceph-mon", "ceph-osd")

_CONF = """[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
mon_initial_members = a
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
cluster_network = 127.0.0.0/8
ms_bind_ipv6 = false
ms_bind_ipv4 = true
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = {root}/run
pid_file = {root}/run/$name.pid
admin_socket = {root}/run/$name.asok
log_file = {root}/log/$name.log
mon_data = {root}/mon/$cluster-$id
osd_data = {root}/osd/$cluster-$id
{store}
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
osd_memory_target = 268435456
bluestore_cache_size = 134217728

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{port} tcp_nodelay=1
rgw_data = {root}/rgw
auth_client_required = none
ms_mon_client_mode = crc
"""

_MEMSTORE = "osd_objectstore = memstore\nmemstore_device_bytes = {size}"
_BLUESTORE = (
    "osd_objectstore = bluestore\nbluestore_block_path = {root}/osd/block\nbluestore_block_create = true\n"
    "bluestore_block_size = {size}"
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """A running single-node Ceph RGW: its S3 endpoint and credentials, and its data folder."""

    root: Path
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs's storage options for this server (``AWS_*``, plain HTTP allowed)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def settings(self, hot_root: str, cold_root: str) -> dict[str, str]:
        """The ``EVENTLAKE_*`` environment that puts the lake's roots (``s3://bucket/prefix``) on this server."""
        return {
            "EVENTLAKE_LAKE_URI": hot_root,
            "EVENTLAKE_COLD_URI": cold_root,
            "EVENTLAKE_S3_ENDPOINT": self.endpoint,
            "EVENTLAKE_S3_ACCESS_KEY_ID": self.access_key_id,
            "EVENTLAKE_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "EVENTLAKE_S3_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (delta-rs writes into buckets, it does not create them)."""
        import pyarrow.fs as pafs  # noqa: PLC0415 (the server itself needs no pyarrow)

        fs = pafs.S3FileSystem(
            access_key=self.access_key_id,
            secret_key=self.secret_access_key,
            endpoint_override=self.endpoint,
            region=self.region,
            scheme="http",
            allow_bucket_creation=True,
        )
        fs.create_dir(name)

    def stop(self) -> None:
        """Stop the gateway, the OSD and the monitor (SIGTERM by their pid files, then SIGKILL)."""
        pids = [int(p.read_text()) for p in sorted((self.root / "run").glob("*.pid")) if p.read_text().strip()]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            _signal(pid, signal.SIGKILL)


def start(
    root: Path, *, persistent: bool = False, port: int | None = None, size_mb: int = 2048, timeout_s: float = 90
) -> S3Server:
    """Start a single-node Ceph RGW with its data under ``root`` (created; ``persistent``: a
    file-backed bluestore that survives a restart, else RAM) and an S3 user, the gateway on
    ``127.0.0.1:port`` (a free port when ``None``); return it once the gateway answers.

    A persistent server started again on the same ``root`` keeps its cluster, objects, port and
    credentials (``root/server.json``, readable by its owner only); ``port`` is then ignored.

    Raises:
        FileNotFoundError: the Ceph packages are not installed (:data:`PACKAGES`).
        RuntimeError: a daemon did not come up within ``timeout_s`` seconds (its log is under
            ``root/log``).
    """
    state_file = root / "server.json"
    if persistent and state_file.exists():
        return _restart(root, json.loads(state_file.read_text()), timeout_s)
    for folder in ("mon", "osd", "run", "log", "rgw"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    conf = root / "ceph.conf"
    port, fsid = port or free_port(), str(uuid.uuid4())
    mon_v2, mon_v1 = free_port(), free_port()
    store = (_BLUESTORE if persistent else _MEMSTORE).format(root=root, size=size_mb * 1024 * 1024)
    conf.write_text(_CONF.format(fsid=fsid, mon_v2=mon_v2, mon_v1=mon_v1, root=root, store=store, port=port))
    c = ["--conf", str(conf)]
    logs = root / "log"
    monmap = root / "monmap"
    mon_addr = f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]"
    _run(["monmaptool", "--create", "--addv", "a", mon_addr, "--fsid", fsid, str(monmap)], logs)
    _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(monmap)], logs)
    _run(["ceph-mon", *c, "-i", "a"], logs)
    osd_uuid = str(uuid.uuid4())
    osd_id = _run(["ceph", *c, "osd", "new", osd_uuid], logs, timeout_s).strip().splitlines()[-1]
    (root / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
    _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], logs)
    _run(["ceph-osd", *c, "-i", osd_id], logs)
    _run(["radosgw", *c, "-n", "client.rgw.a"], logs)
    server = S3Server(root, f"http://127.0.0.1:{port}", "eventlake", uuid.uuid4().hex)
    _run(
        ["radosgw-admin", *c, "user", "create", "--uid=eventlake", "--display-name=eventlake"]
        + [f"--access-key={server.access_key_id}", f"--secret={server.secret_access_key}"],
        logs,
        timeout_s,
    )
    _wait_answering(server, timeout_s)
    if persistent:
        state = {"endpoint": server.endpoint, "access_key_id": server.access_key_id, "osd_id": osd_id}
        state_file.touch(mode=0o600)
        state_file.write_text(json.dumps({**state, "secret_access_key": server.secret_access_key}))
    return server


def _restart(root: Path, state: dict[str, str], timeout_s: float) -> S3Server:
    """Start the daemons of the persistent cluster under ``root`` again, as they were configured."""
    c, logs = ["--conf", str(root / "ceph.conf")], root / "log"
    server = S3Server(root, state["endpoint"], state["access_key_id"], state["secret_access_key"])
    if _answers(server):  # still running (a stack that was killed without stopping it)
        return server
    server.stop()  # whatever half of it is left
    _run(["ceph-mon", *c, "-i", "a"], logs)
    _run(["ceph-osd", *c, "-i", state["osd_id"]], logs)
    _run(["radosgw", *c, "-n", "client.rgw.a"], logs)
    _wait_answering(server, timeout_s)
    return server


def _answers(server: S3Server) -> bool:
    try:
        server.create_bucket("eventlake-probe")
    except OSError:
        return False
    return True


def _wait_answering(server: S3Server, timeout_s: float) -> None:
    """Wait until the gateway answers (once the OSD is up and its pools exist)."""
    deadline = time.monotonic() + timeout_s
    while not _answers(server):
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"Ceph RGW did not answer on {server.endpoint}; logs in {server.root / 'log'}")
        time.sleep(0.5)


def _run(args: list[str], log_dir: Path, timeout_s: float = 60) -> str:
    """Run a Ceph command; its output. Output goes to a file under ``log_dir``, not a pipe: the
    daemons fork into the background keeping the descriptors they were given, and a pipe kept open
    would hang the caller waiting for its end."""
    out = log_dir / f"{Path(args[0]).name}.out"
    with out.open("w") as sink:
        done = subprocess.run(
            args, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s, check=False
        )
    text = out.read_text()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}): {text[-2000:]}")
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
