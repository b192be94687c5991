"""Run Superset from its own virtualenv: secrets, admin user, start, provisioning.

Used by ``scripts/stack.py`` (``make up``) and the integration tests; Superset itself runs in
``.venv-superset`` (created by ``make superset-venv``), never imported into the pipeline's venv.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-superset"
CONFIG = ROOT / "dashboards" / "superset_config.py"
PROVISION = ROOT / "dashboards" / "provision.py"


class SupersetError(RuntimeError):
    """Superset could not be set up, started or provisioned."""


@dataclass(frozen=True)
class Admin:
    """The admin account; ``generated`` is true when this call created the credentials."""

    username: str
    password: str
    generated: bool


def _secret_file(path: Path, make: str) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def environment(data_dir: Path) -> dict[str, str]:
    """Environment for Superset processes: config path, data folder, secret key.

    ``SUPERSET_SECRET_KEY`` is taken from the environment, else generated once (48 random
    bytes) under ``<data>/superset/secret_key`` and reused, since changing it breaks stored
    connections.
    """
    home = data_dir / "superset"
    secret = os.environ.get("SUPERSET_SECRET_KEY") or _secret_file(home / "secret_key", secrets.token_urlsafe(48))
    return {
        **os.environ,
        "SUPERSET_CONFIG_PATH": str(CONFIG),
        "EVENTLAKE_DATA_DIR": str(data_dir),
        "SUPERSET_SECRET_KEY": secret,
        "FLASK_APP": "superset",
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # superset-client over plain http on loopback
        "PYTHONUNBUFFERED": "1",
    }


def admin(data_dir: Path) -> Admin:
    """Admin credentials from ``SUPERSET_ADMIN_USER``/``_PASSWORD``, else generated once under the data folder."""
    if os.environ.get("SUPERSET_ADMIN_USER") and os.environ.get("SUPERSET_ADMIN_PASSWORD"):
        return Admin(os.environ["SUPERSET_ADMIN_USER"], os.environ["SUPERSET_ADMIN_PASSWORD"], False)
    path = data_dir / "superset" / "admin.json"
    generated = not path.exists()
    document = json.loads(_secret_file(path, json.dumps({"username": "admin", "password": secrets.token_urlsafe(12)})))
    return Admin(document["username"], document["password"], generated)


def _run(args: list[str], env: dict[str, str], log_file: Path) -> None:
    with log_file.open("ab") as out:
        done = subprocess.run(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SupersetError(f"{' '.join(args[:3])} failed with code {done.returncode}; see {log_file}")


def initialize(env: dict[str, str], account: Admin, log_file: Path) -> None:
    """Migrate the metadata database, create the admin (if missing) and sync roles. Idempotent."""
    superset = str(VENV / "bin" / "superset")
    _run([superset, "db", "upgrade"], env, log_file)
    # `fab create-admin` leaves an existing user alone (it says so and exits 0).
    _run(
        [
            superset,
            "fab",
            "create-admin",
            "--username",
            account.username,
            "--firstname",
            "eventlake",
            "--lastname",
            "admin",
            "--email",
            f"{account.username}@localhost",
            "--password",
            account.password,
        ],
        env,
        log_file,
    )
    _run([superset, "init"], env, log_file)


def start_args(port: int) -> list[str]:
    """The gunicorn command serving Superset on 127.0.0.1:``port``."""
    return [
        str(VENV / "bin" / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "--timeout",
        "120",
        "--graceful-timeout",  # Ctrl-C: do not wait 30 s for idle keep-alive threads
        "5",
        "--capture-output",
        "superset.app:create_app()",
    ]


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``{url}/health`` answers 200.

    Raises:
        SupersetError: the process exited or did not answer in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SupersetError(f"Superset exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SupersetError(f"Superset did not answer {url}/health within {timeout_s:.0f} s")


def provision(env: dict[str, str], account: Admin, url: str, serving_path: Path, log_file: Path) -> None:
    """Push ``dashboards/bundle`` into the Superset at ``url`` (``dashboards/provision.py``)."""
    _run(
        [str(VENV / "bin" / "python"), str(PROVISION), "--url", url, "--serving-path", str(serving_path)],
        {**env, "SUPERSET_ADMIN_USER": account.username, "SUPERSET_ADMIN_PASSWORD": account.password},
        log_file,
    )
