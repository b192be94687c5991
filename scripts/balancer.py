"""A real load balancer on 127.0.0.1: HAProxy from Debian's package (``haproxy``, installed by
``make packages`` when missing), in front of several ingest nodes (or any HTTP servers).

:func:`start` writes a configuration and runs ``haproxy`` in the foreground as a child process;
:meth:`Balancer.stop` ends it. The configuration: round robin over the backends; health checks on
``/readyz`` every ``check_ms``, each given 5 s to answer (a node's readiness probe writes to the
lake's store), a node that fails two taken out of rotation until it passes one again; a request
whose connection to a node could not be opened retried once on another, while a request a node
received is never sent again, so a node that dies holding it cannot make an event twice (its client
gets a 502 or 503 and decides). ``extra`` adds lines to the frontend (tests use it to make a proxy
that misbehaves).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: The Debian package of the balancer.
PACKAGE = "haproxy"

_CONFIG = """global
  maxconn 8000
  log stderr format raw local0 warning

defaults
  mode http
  log global
  option httplog
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 5s
  timeout http-keep-alive 60s
  retries 1
  option redispatch 1
  retry-on conn-failure

frontend ingest
  bind 127.0.0.1:{port}
{extra}
  default_backend nodes

backend nodes
  balance roundrobin
  option httpchk GET {check_path}
  default-server inter {check_ms} fall 2 rise 1
{servers}
"""


@dataclass
class Balancer:
    """A running HAProxy: its ``url`` (``http://127.0.0.1:<port>``), process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop HAProxy (SIGTERM; SIGKILL after 10 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(
    folder: Path,
    port: int,
    backends: list[str],
    *,
    check_path: str = "/readyz",
    check_ms: int = 1000,
    extra: list[str] | None = None,
    timeout_s: float = 10,
) -> Balancer:
    """Start HAProxy on ``127.0.0.1:port`` in front of ``backends`` (``host:port`` each), its
    configuration and log under ``folder``; returns once it accepts connections.

    Raises:
        FileNotFoundError: ``haproxy`` is not installed (``apt-get install haproxy``).
        RuntimeError: it exited or did not listen within ``timeout_s``; the message holds its log.
    """
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise FileNotFoundError(f"haproxy is not installed: apt-get install {PACKAGE}")
    folder.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"  server node{i} {backend} check" for i, backend in enumerate(backends))
    config = _CONFIG.format(
        port=port,
        extra="\n".join(f"  {line}" for line in extra or []),
        check_path=check_path,
        check_ms=check_ms,
        servers=servers,
    )
    (folder / "haproxy.cfg").write_text(config)
    log = folder / "haproxy.log"
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(folder / "haproxy.cfg")],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {proc.returncode}: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return Balancer(f"http://127.0.0.1:{port}", proc, log)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"haproxy did not listen on {port} in {timeout_s} s: {log.read_text()}")
