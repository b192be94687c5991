"""A real PostgreSQL server on 127.0.0.1 from Debian's package (``postgresql``, installed by ``make
packages`` when missing), for Dagster's run, event-log and schedule storage in tests and ``bench/``.

:func:`start` creates a cluster under a folder (``initdb``, trust authentication on 127.0.0.1 only),
starts it on a port (``pg_ctl``; its Unix socket in the same folder), creates a database and returns
its URL. PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` system
user the package creates, and the commands run as that user (``runuser``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Debian's PostgreSQL binaries (the version bookworm ships).
BIN = Path("/usr/lib/postgresql/15/bin")
#: The Debian package of the server.
PACKAGE = "postgresql"


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster: its data folder, port, and the URL of its database."""

    root: Path
    port: int
    database: str

    @property
    def dsn(self) -> str:
        """libpq's URL of the database: ``postgresql://postgres@127.0.0.1:<port>/<database>`` (trust
        authentication, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        """The URL Dagster's storage takes (SQLAlchemy's, with the psycopg2 driver dagster-postgres
        installs: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3)."""
        return self.dsn.replace("postgresql://", "postgresql+psycopg2://", 1)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``)."""
        _as_owner([str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"], check=False)


def start(root: Path, port: int | None = None, database: str = "dagster", timeout_s: float = 60) -> PostgresServer:
    """Create a cluster under ``root`` (created), start it on ``127.0.0.1:port`` (a free port when
    ``None``) and create ``database``; returns once it accepts connections. As root, ``root``'s
    parents must be open to the ``postgres`` user (e.g. a folder made directly under ``/tmp``).

    Raises:
        FileNotFoundError: PostgreSQL is not installed (``apt-get install postgresql``).
        subprocess.CalledProcessError: ``initdb``, ``pg_ctl`` or ``createdb`` failed (their output in
            ``root/postgres.log``).
    """
    if not (BIN / "initdb").exists():
        raise FileNotFoundError(f"PostgreSQL is not installed: apt-get install {PACKAGE}")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = port or _free_port()
    data = root / "data"
    _as_owner([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], log=root)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=on"
    _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w",
               "-t", str(int(timeout_s)), "start"], log=root)  # fmt: skip
    server = PostgresServer(root, port, database)
    create_database(server, database)
    return server


def create_database(server: PostgresServer, name: str) -> None:
    """Create database ``name`` on ``server`` (``createdb``).

    Raises:
        subprocess.CalledProcessError: it failed (e.g. it exists; the output in ``postgres.log``).
    """
    command = [str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", name]
    _as_owner(command, log=server.root)


def _as_owner(args: list[str], log: Path | None = None, check: bool = True) -> None:
    """Run ``args`` as the cluster's owner: ``postgres`` when this process is root, else this user."""
    command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    with (log / "postgres.log").open("ab") if log else open(os.devnull, "wb") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=check)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
