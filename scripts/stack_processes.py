"""The stack's processes under supervisord: a dead one is restarted, stopping stops them all.

supervisord (http://supervisord.org) runs in the foreground as a child of ``scripts/stack.py``,
with a config written under the data folder on every start (``<data>/run/supervisord.conf``)
and its control socket beside it (a Unix socket, so it holds no port). Every program is started
by the CLI in order (``autostart=false``) and restarted by supervisord whenever it exits
(``autorestart=true``); stopping signals each program's whole process group and kills the group
after ``stopwaitsecs`` (``stopasgroup``/``killasgroup``), so no grandchild — a uvicorn worker, a
Dagster code server or run worker, a gunicorn worker — outlives the stack. Programs stop in the
reverse order of their ``priority`` (Superset, the Dagster daemon, its webserver, the ingest API).

Inspect a running stack with ``.venv/bin/supervisorctl -c <data>/run/supervisord.conf status``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from supervisor.xmlrpc import SupervisorTransport

logger = logging.getLogger("eventlake.stack")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: A Unix socket's path holds at most 107 bytes (``sun_path``).
_MAX_SOCKET_PATH = 107


class ProgramFailedError(RuntimeError):
    """A program of the stack could not be started, or supervisord gave up restarting it."""


def exit_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent process dies (Linux).

    Used by the CLI (its parent is make, or the shell that ran it: a killed `make up` stops the
    stack), by supervisord (its parent is the CLI) and by each uvicorn worker (its parent is the
    uvicorn master: see ``scripts/ingest_worker.py``).

    Raises:
        OSError: ``prctl(PR_SET_PDEATHSIG)`` failed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class Program:
    """One supervised program: its command, the environment it adds, its start order and stop wait (s)."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    priority: int = 100
    stop_wait_s: int = 30


def _escaped(value: str) -> str:
    # supervisord expands %(name)s in these values: a literal % is written %%.
    return value.replace("%", "%%")


def _environment(env: dict[str, str]) -> str:
    for key, value in env.items():
        if '"' in value:
            raise ValueError(f"supervisord cannot pass a double quote in an environment value ({key})")
    return ",".join(f'{key}="{_escaped(value)}"' for key, value in env.items())


def render_config(programs: list[Program], socket_path: Path, logs: Path, workdir: Path) -> str:
    """supervisord's config for ``programs``: foreground, control on ``socket_path``, logs under ``logs``."""
    config: dict[str, dict[str, str]] = {}
    config["unix_http_server"] = {"file": str(socket_path), "chmod": "0700"}
    config["supervisord"] = {
        "nodaemon": "true",
        "silent": "true",  # the CLI reports restarts; supervisord's own log is logs/supervisord.log
        "logfile": str(logs / "supervisord.log"),
        "pidfile": str(socket_path.with_suffix(".pid")),
        "childlogdir": str(logs),
    }
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {"serverurl": f"unix://{socket_path}"}
    for program in programs:
        config[f"program:{program.name}"] = {
            "command": _escaped(shlex.join(program.command)),
            "directory": str(workdir),
            "environment": _environment(program.env),
            "priority": str(program.priority),
            "autostart": "false",
            "autorestart": "true",
            "startsecs": "1",
            # A restarted uvicorn master may find its port still held by the old workers for a
            # moment (they shut down gracefully): a few quick retries cover it.
            "startretries": "10",
            "stopsignal": "INT",  # Dagster's processes shut their code servers down cleanly on it
            "stopwaitsecs": str(program.stop_wait_s),
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(logs / f"{program.name}.log"),
        }
    return "".join(
        f"[{section}]\n" + "".join(f"{key}={value}\n" for key, value in values.items()) + "\n"
        for section, values in config.items()
    )


class Supervisor:
    """supervisord for one data folder: started in the foreground, driven over XML-RPC, stopped with SIGTERM."""

    def __init__(self, run_dir: Path, logs: Path, workdir: Path) -> None:
        self.config_path = run_dir / "supervisord.conf"
        self.socket_path = run_dir / "supervisord.sock"
        self.logs = logs
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self._pids: dict[str, int] = {}
        if len(str(self.socket_path).encode()) > _MAX_SOCKET_PATH:
            raise ValueError(f"the data folder's path is too long for a Unix socket: {self.socket_path}")

    def start(self, programs: list[Program], timeout_s: float = 30) -> None:
        """Write the config, start supervisord (none of its programs yet) and wait until it answers.

        Raises:
            ProgramFailedError: supervisord exited or did not answer within ``timeout_s`` seconds.
        """
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(programs, self.socket_path, self.logs, self.workdir))
        self.config_path.chmod(0o600)  # the environment of Superset holds its secret key
        with (self.logs / "supervisord.log").open("ab") as out:
            # Own session: Ctrl-C reaches the CLI alone, which stops the stack in order.
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "supervisord"), "-c", str(self.config_path)],
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=exit_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_supervisord()
            try:
                if self._rpc().supervisor.getState()["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Fault):
                pass
            time.sleep(0.1)
        raise ProgramFailedError(f"supervisord did not answer within {timeout_s:.0f} s; see {self.logs}")

    def _rpc(self) -> Any:  # XML-RPC answers are dynamic: supervisord's API docs give their shape
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _check_supervisord(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ProgramFailedError(f"supervisord exited (code {code}); see {self.logs / 'supervisord.log'}")

    def start_program(self, name: str) -> int:
        """Start ``name`` and return its pid once it has run for ``startsecs``.

        Raises:
            ProgramFailedError: it exited at once, also on every retry.
        """
        try:
            self._rpc().supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as exc:
            raise ProgramFailedError(f"{name} did not start ({exc.faultString}); see {self.log(name)}") from exc
        pid = int(self._rpc().supervisor.getProcessInfo(name)["pid"])
        self._pids[name] = pid
        return pid

    def log(self, name: str) -> Path:
        """The log file of program ``name`` (its stdout and stderr)."""
        return self.logs / f"{name}.log"

    def check(self) -> list[str]:
        """Say which started programs supervisord restarted since the last call.

        Raises:
            ProgramFailedError: supervisord exited, or gave up restarting a program (FATAL).
        """
        self._check_supervisord()
        restarted = []
        for info in self._rpc().supervisor.getAllProcessInfo():
            name = info["name"]
            if info["statename"] == "FATAL":
                raise ProgramFailedError(f"{name} keeps exiting, supervisord gave up; see {self.log(name)}")
            if name in self._pids and info["pid"] and info["pid"] != self._pids[name]:
                restarted.append(f"{name} exited and was restarted (pid {self._pids[name]} -> {info['pid']})")
                self._pids[name] = info["pid"]
        return restarted

    def pids(self) -> dict[str, int]:
        """The pid of each running program by name (0 for one not running)."""
        return {info["name"]: int(info["pid"]) for info in self._rpc().supervisor.getAllProcessInfo()}

    def stop(self, timeout_s: float = 150) -> None:
        """Stop every program (reverse priority, each group SIGINT then SIGKILL) and supervisord.

        If supervisord itself has not exited after ``timeout_s`` seconds, it and the process group
        of every program it had started are killed.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("supervisord did not stop within %.0f s, killing it and its programs", timeout_s)
            self.proc.kill()
            self.proc.wait()
            for pid in self._pids.values():
                with contextlib.suppress(ProcessLookupError):  # the group is gone already
                    os.killpg(pid, signal.SIGKILL)


def wait_ready(url: str, timeout_s: float, name: str, healthy: Callable[[], object]) -> None:
    """Wait until ``url`` answers 200, calling ``healthy`` (which raises when to give up) meanwhile.

    Raises:
        ProgramFailedError: no 200 within ``timeout_s`` seconds (or what ``healthy`` raises).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        healthy()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise ProgramFailedError(f"{name} did not answer {url} within {timeout_s:.0f} s")
