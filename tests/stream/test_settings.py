"""Settings fail fast: unknown variables, missing addresses, bad values."""

from __future__ import annotations

import pytest

from stream.settings import Settings, SettingsError, reject_unknown_variables

pytestmark = pytest.mark.unit


def test_a_misspelt_variable_stops_start_up_and_names_the_closest_setting() -> None:
    with pytest.raises(
        SettingsError,
        match="NEXTACTION_KAFKA_BOOTSTRAPS: unknown setting; did you mean NEXTACTION_KAFKA_BOOTSTRAP\\?",
    ):
        reject_unknown_variables({"NEXTACTION_KAFKA_BOOTSTRAPS": "kafka:9092", "HOME": "/root"})


def test_a_renamed_setting_points_to_its_new_name() -> None:
    with pytest.raises(SettingsError, match="did you mean NEXTACTION_PUBLISHED_TOP_K"):
        reject_unknown_variables({"NEXTACTION_TOP_K": "10"})


def test_known_and_foreign_variables_pass() -> None:
    reject_unknown_variables({"NEXTACTION_TRITON_GRPC_URL": "triton:8001", "KAFKA_HOME": "/opt"})


def test_a_worker_without_addresses_is_told_what_to_set() -> None:
    with pytest.raises(SettingsError) as failure:
        Settings(kafka_bootstrap="kafka:9092").require_addresses()
    message = str(failure.value)
    assert "NEXTACTION_TRITON_GRPC_URL: not set" in message and "--embedded" in message
    assert "NEXTACTION_KAFKA_BOOTSTRAP" not in message
    Settings(kafka_bootstrap="kafka:9092", triton_grpc_url="triton:8001").require_addresses()
