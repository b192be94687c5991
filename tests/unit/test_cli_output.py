"""What the console scripts print and how they end: a stdout closed by its reader (``eventlake-status |
head -1``) ends every one quietly (pipelines/cli/closed_pipe.py), ``eventlake-replay --help`` says
what it reads, and ``scripts/stack.py --help`` answers without .venv's packages."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

import pytest

from pipelines.cli import replay
from pipelines.cli.closed_pipe import CLOSED_PIPE_STATUS
from warehouse import gold
from warehouse.marts import catalog
from warehouse.serving import publish_snapshot

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: Every console script of the project (pyproject.toml), so a new one is held to the same rule.
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def run_with_stdout_closed(
    command: list[str], env: dict[str, str], unbuffered: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with stdout a pipe whose reading end is closed before it writes anything (a
    reader that went away, deterministically); its stderr and exit status are returned."""
    env = {**env, "PYTHONUNBUFFERED": "1"} if unbuffered else {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, "", stderr)


@pytest.fixture
def served(tmp_path: Path) -> dict[str, str]:
    """The environment of a data folder whose serving snapshot holds one app's DAU/MAU, with every
    mart's watermark at bronze version 7 (no lake: bronze has no version)."""
    data_dir = tmp_path / "data"
    with gold.connect(data_dir / "warehouse.duckdb") as con:
        con.execute(
            "insert into daily_active_users (app, source, day, dau) values ('shop', 'web', ?, 3)", [date(2024, 5, 1)]
        )
        con.execute(
            "insert into monthly_active_users (app, source, day, calendar_month, mau_rolling_30d, mau_calendar_month)"
            " values ('shop', 'web', ?, ?, 5, 5)",
            [date(2024, 5, 1), date(2024, 5, 1)],
        )
        for mart in catalog():
            gold.set_gold_watermark(con, mart, gold.GoldWatermark(silver_version=2, bronze_version=7))
        publish_snapshot(con, data_dir / "serving" / "serving.duckdb", catalog())
    return {**os.environ, "EVENTLAKE_DATA_DIR": str(data_dir)}


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_eventlake_status_into_a_closed_pipe_ends_quietly(served: dict[str, str], unbuffered: bool) -> None:
    # From the new-user trial: `eventlake-status | head -1` printed a BrokenPipeError traceback.
    done = run_with_stdout_closed([str(BIN / "eventlake-status")], served, unbuffered)

    assert done.stderr == ""
    assert done.returncode == CLOSED_PIPE_STATUS == 141  # 128 + SIGPIPE, what a shell shows for `yes | head -1`


def test_eventlake_status_piped_into_head(served: dict[str, str]) -> None:
    script = f"{BIN / 'eventlake-status'} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=served, capture_output=True, text=True)

    assert done.stdout == "served gold covers bronze version 7; bronze is at version None\n"
    assert done.stderr == ""
    # 0 when head read everything before it exited, 141 when eventlake-status wrote after that.
    assert done.returncode in (0, CLOSED_PIPE_STATUS)
    full = subprocess.run([BIN / "eventlake-status"], env=served, capture_output=True, text=True, check=True)
    assert "shop  web     1     2024-05-01  3    3.0      5        5" in full.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_ends_quietly_when_its_reader_is_gone(script: str, tmp_path: Path) -> None:
    # --help writes to stdout without any data folder; buffered, the write fails only at the flush,
    # which Python would otherwise report at exit ("Exception ignored … BrokenPipeError", status 120).
    env = {**os.environ, "EVENTLAKE_DATA_DIR": str(tmp_path)}
    done = run_with_stdout_closed([str(BIN / script), "--help"], env)

    assert done.stderr == ""
    assert done.returncode == CLOSED_PIPE_STATUS


def test_a_broken_pipe_other_than_stdout_is_not_hidden(tmp_path: Path) -> None:
    # A connection that breaks (a socket, another pipe) is an error of its own, not a reader gone.
    code = (
        "import os, sys\n"
        "from pipelines.cli.closed_pipe import quiet_on_closed_pipe\n"
        "@quiet_on_closed_pipe\n"
        "def main() -> int:\n"
        "    read, write = os.pipe()\n"
        "    os.close(read)\n"
        "    os.write(write, b'x')\n"
        "    return 0\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 1
    assert "BrokenPipeError" in done.stderr


def test_replay_help_names_the_formats_the_columns_and_where_the_app_comes_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        replay.main(["--help"])
    text = capsys.readouterr().out

    assert exit_info.value.code == 0
    for suffix in replay.SUFFIXES:
        assert suffix in text
    assert "Apache/NCSA access log in combined format" in text
    assert '"GET /path HTTP/1.1" status bytes "referrer" "agent"' in text
    assert "Columns read: user_id, event, timestamp (required), session_id (optional)" in text
    # Every column the CSV reader requires, or reads besides the properties, is named.
    for column in replay._REQUIRED_CSV_COLUMNS | replay._OPTIONAL_CSV_COLUMNS:
        assert column in text
    assert "file's name up to its first dot as its app" in text
    for sample in ("samples/onlineshop_2019.csv", "shop.v2.csv.gz"):
        assert f"{sample} -> {replay.app_name(Path(sample))}" in text
    assert "NDJSON" in text and "keeps it" in text


def test_replay_refuses_a_file_of_another_type_before_sending_anything(tmp_path: Path) -> None:
    other = tmp_path / "events.txt"
    other.write_text("user_id,event,timestamp\n")
    env = {**os.environ, "EVENTLAKE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([BIN / "eventlake-replay", str(other)], env=env, capture_output=True, text=True)

    assert done.returncode == 2
    assert "events.txt: unsupported sample file (expected a name ending in .log, .csv" in done.stderr
    assert "Traceback" not in done.stderr


def test_stack_help_needs_only_the_standard_library() -> None:
    # From the new-user trial: `python3 scripts/stack.py --help` failed before .venv existed.
    # -S: no site-packages at all, as with a system python3 before `make up`.
    done = subprocess.run(
        [sys.executable, "-S", "scripts/stack.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "{up,demo,serve}" in done.stdout and "EVENTLAKE_INGEST_PORT" in done.stdout
    started = subprocess.run(
        [sys.executable, "-S", "scripts/stack.py", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 1
    assert "not installed" in started.stderr and "make up" in started.stderr
    assert "Traceback" not in started.stderr
