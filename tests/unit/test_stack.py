"""The local stack's CLI and its supervisord config (scripts/stack.py, scripts/stack_processes.py)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import stack  # noqa: E402
import stack_processes  # noqa: E402


def test_a_second_ctrl_c_during_shutdown_does_not_leave_servers_running(tmp_path: Path) -> None:
    # Regression: a second SIGINT while the stack stopped aborted it; uvicorn and Dagster kept running.
    (tmp_path / "logs").mkdir()
    # A server that takes ~1 s to shut down on SIGINT, like Dagster's.
    slow = "import signal,sys,time; signal.signal(signal.SIGINT, lambda *_: (time.sleep(1), sys.exit()));time.sleep(60)"
    supervisor = stack_processes.Supervisor(tmp_path / "run", tmp_path / "logs", tmp_path)
    supervisor.start([stack_processes.Program("slow", [sys.executable, "-c", slow])])
    pid = supervisor.start_program("slow")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # the second Ctrl-C
    try:
        timer.start()
        stack.stop(supervisor, tmp_path / "dagster")
    finally:
        timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert supervisor.proc is not None and supervisor.proc.poll() is not None
    assert not Path(f"/proc/{pid}").exists()


def test_render_config_is_read_by_supervisord_as_written(tmp_path: Path) -> None:
    # supervisord expands %(name)s in commands and environments and splits the environment on
    # commas: a literal % and a comma inside a value must come through unchanged.
    program = stack_processes.Program(
        "api", [sys.executable, "-c", "print('50% off, now')"], {"KEY": "a,b%c", "EMPTY": ""}, priority=200
    )
    config = tmp_path / "supervisord.conf"
    config.write_text(stack_processes.render_config([program], tmp_path / "s.sock", tmp_path, tmp_path))
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    parsed = options.process_group_configs[0].process_configs[0]
    assert shlex.split(parsed.command) == program.command
    assert parsed.environment == program.env
    assert (parsed.priority, parsed.stopsignal, parsed.stopwaitsecs) == (200, signal.SIGINT, 30)
    assert parsed.stopasgroup and parsed.killasgroup and parsed.autorestart is RestartUnconditionally
    assert options.nodaemon and not parsed.autostart


def test_render_config_refuses_a_double_quote_in_the_environment(tmp_path: Path) -> None:
    program = stack_processes.Program("api", ["true"], {"KEY": 'say "hi"'})
    with pytest.raises(ValueError, match="double quote"):
        stack_processes.render_config([program], tmp_path / "s.sock", tmp_path, tmp_path)


def test_waiting_for_gold_stops_with_the_error_of_a_failed_run(tmp_path: Path) -> None:
    # From the new-user trial: a misspelt key in a funnels file failed the run, and `make up`
    # waited silently for its 15-minute limit. Now: once the retries the sensor makes failed too.
    import dagster as dg

    from pipelines.defs import pipeline_assets, pipeline_resources
    from warehouse.settings import Settings

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(stack.dagster_yaml(postgres=False))
    started = datetime.now(UTC)
    check = stack.failed_run_check(home, started, attempts=1)
    patient = stack.failed_run_check(home, started)  # make up's: 3 attempts, the sensor retries
    check()  # no failed run yet

    funnels = tmp_path / "funnels.yaml"
    funnels.write_text("funnels:\n  - name: f\n    conversion_window: 1h\n    steps: [{name: a, evnt_types: [a]}]\n")
    settings = Settings(data_dir=tmp_path, funnels_path=funnels)
    result = dg.materialize(
        [asset for asset in pipeline_assets(settings).derived if dg.AssetKey("funnel_steps") in asset.keys],
        resources=pipeline_resources(settings),
        instance=dg.DagsterInstance.from_config(str(home)),
        raise_on_error=False,
    )
    assert not result.success
    patient()  # one failure: the sensor retries (a killed hot path is replaced)
    with pytest.raises(stack.RunFailedError, match=r"(?s)funnel_steps: ValueError: invalid funnels in .*evnt_types"):
        check()
