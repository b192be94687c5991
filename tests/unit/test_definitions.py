"""The code location loads, with the asset keys and checks renames would break."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs
from pipelines.validation import check_names, suite_path
from warehouse.marts import catalog, packaged_marts_dir

#: One asset per mart folder (warehouse/marts): the shipped marts, by folder name.
MARTS = {folder.name for folder in packaged_marts_dir().iterdir() if folder.joinpath("mart.yaml").is_file()}
#: Assets the pipeline derives (everything but bronze and quarantine).
DERIVED = {"events", "user_attributes", "serving_snapshot"} | MARTS


def test_definitions_asset_keys_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == DERIVED | {
        "raw_events",
        "rejected_events",
        "purged_history",  # maintenance after a rescrub: rare, so no freshness policy
    }
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    # One check per suite (its expectations are in the check's metadata), not one per expectation.
    suites = {("events", "raw_events_expectations")}
    invariants = {(table, "invariants") for table in ("events", *MARTS)}
    batch = {("events", "batch_has_people_events"), ("events", "quarantine_rate")}
    users = {("user_attributes", "users_source_valid")}
    assert checks == suites | batch | invariants | users


def test_suite_checks_name_every_expectation_of_their_suite() -> None:
    graph = defs.resolve_asset_graph()
    descriptions = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).description
        for key in graph.asset_check_keys
    }
    suites = {
        ("events", "raw_events_expectations"): ("expectations/raw_events.json", suite_path("raw_events")),
        ("events", "invariants"): ("expectations/events.json", suite_path("events")),
    } | {
        (name, "invariants"): (f"marts/{name}/expectations.json", mart.folder.joinpath("expectations.json"))
        for name, mart in catalog().items()
    }
    covered = 0
    for key, (shown, suite) in suites.items():
        names = [name for name, _ in check_names(suite)]
        assert descriptions[key] == f"{shown}: {', '.join(names)}."
        covered += len(names)
    assert covered == 24 + 12 + 8 + 7 + 6 + 8 + 7 + 14 + 8 + 12 + 9 + 11 + 5 + 9 + 11 + 8 + 8 + 5


def test_jobs_share_the_assets_and_set_the_silver_mode() -> None:
    modes = {}
    for name in ("ingest_to_gold", "replay_quarantine", "reprocess_silver", "rescrub_lake"):
        job = defs.resolve_job_def(name)
        modes[name] = job.run_config["ops"]["silver_events"]["config"]["mode"]  # type: ignore[index]
    assert modes == {
        "ingest_to_gold": "ingest",
        "replay_quarantine": "replay",
        "reprocess_silver": "reprocess",
        "rescrub_lake": "rescrub",
    }
    purge = dg.AssetKey("purged_history")
    assert purge in defs.resolve_job_def("rescrub_lake").asset_layer.asset_graph.executable_asset_keys
    assert purge not in defs.resolve_job_def("ingest_to_gold").asset_layer.asset_graph.executable_asset_keys


def test_derived_assets_carry_a_freshness_policy() -> None:
    graph = defs.resolve_asset_graph()
    fresh = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).freshness_policy}
    assert fresh == DERIVED


def test_sensor_is_running_by_default_and_ticks_within_5_s() -> None:
    sensor = defs.resolve_sensor_def("bronze_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds is not None and sensor.minimum_interval_seconds <= 5
    assert sensor.job_name == "hot_path"
