"""The code location loads, with the asset keys and checks renames would break."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs


def test_definitions_asset_keys_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "raw_events",
        "events",
        "rejected_events",
        "daily_active_users",
        "monthly_active_users",
        "daily_event_counts",
        "daily_page_views",
        "data_quality_daily",
        "serving_snapshot",
    }
    checks = {key.name for key in graph.asset_check_keys}
    assert checks == {
        "event_id_present",
        "event_type_present",
        "event_type_name",
        "timestamp_after_2000",
        "timestamp_not_in_future",
        "user_or_session_present",
    }


def test_sensor_is_running_by_default_and_ticks_within_5_s() -> None:
    sensor = defs.resolve_sensor_def("bronze_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds is not None and sensor.minimum_interval_seconds <= 5
