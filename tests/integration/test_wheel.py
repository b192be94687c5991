"""The package as a user installs it: the built wheel (not an editable checkout) in a fresh venv from
the lock finds its package data — mart folders, suites, SQL, scrub rules, funnels — and loads the
Dagster definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # installed into .venv by `make install`

CHECK = """
from pipelines.definitions import defs
from pipelines.scrub_rules import DEFAULT_RULES_PATH, load_rules
from warehouse.funnels import DEFAULT_FUNNELS_PATH, load_funnels
from warehouse.marts import catalog
import warehouse, pipelines

graph = defs.resolve_asset_graph()
marts = catalog()
assert set(marts) <= {key.to_user_string() for key in graph.get_all_asset_keys()}
assert len(list(graph.asset_check_keys)) == len(marts) + 5
assert load_rules(DEFAULT_RULES_PATH).value_patterns and load_funnels(DEFAULT_FUNNELS_PATH).funnels
print(len(marts), warehouse.__file__, pipelines.__file__)
"""


def test_the_built_wheel_loads_the_definitions_with_its_package_data(tmp_path: Path) -> None:
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    run = {"check": True, "capture_output": True, "text": True, "timeout": 300}
    # The sdist first, then the wheel from it (uv build's default): both must carry the package data.
    subprocess.run([UV, "build", "--quiet", "--out-dir", dist, ROOT], **run)  # type: ignore[call-overload]
    (wheel,) = dist.glob("eventlake-*.whl")
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, venv], **run)  # type: ignore[call-overload]
    python = venv / "bin" / "python"
    lock = ROOT / "requirements.lock"
    subprocess.run([UV, "pip", "install", "--quiet", "--python", python, "-r", lock], **run)  # type: ignore[call-overload]
    subprocess.run([UV, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel], **run)  # type: ignore[call-overload]

    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["EVENTLAKE_DATA_DIR"] = str(tmp_path / "data")
    # Run outside the checkout: only the installed package can be imported.
    done = subprocess.run([python, "-c", CHECK], cwd=tmp_path, env=env, **run)  # type: ignore[call-overload]
    count, warehouse_file, pipelines_file = done.stdout.split()
    assert int(count) == 16
    assert "site-packages" in warehouse_file and "site-packages" in pipelines_file
    for script in ("eventlake-replay", "eventlake-status", "eventlake-sources", "eventlake-types"):
        subprocess.run([venv / "bin" / script, "--help"], cwd=tmp_path, env=env, **run)  # type: ignore[call-overload]
