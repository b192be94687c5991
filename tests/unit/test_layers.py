"""Dependencies point one way: the shared library (``warehouse``) knows none of its users, the lake knows
nothing above it, the ingest service and the pipelines know nothing of each other, and the settings are
read only where a process starts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("warehouse", "ingest_api", "pipelines", "dashboards", "expectations")


def imports() -> dict[str, set[str]]:
    """Module name → the project modules it imports (absolute imports of the project's packages)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
                elif isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
            found[module] = {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def test_each_package_imports_only_the_packages_below_it() -> None:
    graph = imports()
    allowed = {
        "warehouse": {"warehouse"},
        "expectations": set(),
        "ingest_api": {"ingest_api", "warehouse"},
        "pipelines": {"pipelines", "warehouse", "expectations"},
        "dashboards": {"dashboards", "warehouse"},
    }
    wrong = {
        (module, name)
        for module, names in graph.items()
        for name in names
        if name.split(".")[0] not in allowed[module.split(".")[0]]
    }
    assert wrong == set()


def test_the_lake_imports_nothing_above_it() -> None:
    graph = imports()
    lake = {module: names for module, names in graph.items() if module.startswith("warehouse.lake")}
    assert lake and all(name.startswith("warehouse.lake") for names in lake.values() for name in names)


def test_transformations_do_not_import_the_dagster_definitions() -> None:
    graph = imports()
    library = {module for module in graph if module.startswith("pipelines") and not module.startswith("pipelines.def")}
    assert {module for module in library if any(n.startswith("pipelines.defs") for n in graph[module])} == set()


def settings_readers() -> set[str]:
    """Modules that read the settings from the environment: they call ``Settings(...)`` or
    ``read_settings(...)`` (outside the settings module itself)."""
    readers = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                called = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                if called and node.func.id in ("Settings", "read_settings") and path.name != "settings.py":  # type: ignore[union-attr]
                    readers.add(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return readers


def test_settings_are_read_only_where_a_process_starts() -> None:
    """Processes read their settings once at start and pass them down (resources, app state,
    arguments); transformation code gets values, never the environment."""
    assert settings_readers() == {
        "pipelines.definitions",  # the Dagster code locations
        "pipelines.definitions_maintenance",
        "ingest_api.main",  # the API's application
        "ingest_api.node_commit",  # an ingest node's committer process, at its start
        "pipelines.cli.replay",  # the console scripts, at their start
        "pipelines.cli.sources",
        "pipelines.cli.status",
        "pipelines.cli.types",
        "pipelines.cli.query",
        "pipelines.cli.erase",
    }


def test_an_ingest_worker_has_imported_what_its_first_commit_needs(tmp_path: Path) -> None:
    """Regression: once the lake imported pyarrow.dataset only where used, delta-rs's writer imported
    it (and pandas, ~1 s) on the worker's first commit, so the first requests after a start or a
    crash waited for it. A worker's modules now include it; the first commit imports nothing heavy."""
    script = f"""
import sys
import ingest_api.group_commit
from warehouse.lake.store import Lake
from warehouse.lake.tables import RAW_EVENTS
before = set(sys.modules)
Lake({str(tmp_path)!r}).append(RAW_EVENTS, RAW_EVENTS.schema.empty_table())
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("pandas", "pyarrow", "numpy")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
