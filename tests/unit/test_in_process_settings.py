"""Flows a process calls itself against Prefect's ephemeral API run without flow-run heartbeats (each
cost up to 1 s at flow exit, nothing watches them there); with a real server they stay on."""

from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

from flows.common import in_process_settings


def test_ephemeral_api_flows_run_without_heartbeats():
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert get_current_settings().flows.heartbeat_frequency is not None  # Prefect's default: on
        with in_process_settings():
            assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency is not None


def test_a_real_prefect_server_keeps_heartbeats():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api",
                                     PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}):
        with in_process_settings():
            assert get_current_settings().flows.heartbeat_frequency == 60
