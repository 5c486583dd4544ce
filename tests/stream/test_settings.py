"""Settings fail fast: unknown variables, missing addresses, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.app import create_app, presentation
from stream.metrics import StreamMetrics
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


@pytest.mark.parametrize(
    ("kind", "acks", "producer", "idempotent"),
    [
        ("kafka", "all", "IdempotentProducer", True),
        ("kafka", "1", "IdempotentProducer", False),  # idempotence needs acks=all
        ("tansu", "all", "Producer", False),  # Tansu refuses InitProducerId
    ],
)
def test_outputs_are_produced_with_acks_all_and_idempotence_where_the_broker_has_it(
    kind: str, acks: str, producer: str, idempotent: bool
) -> None:
    settings = Settings(
        kafka_bootstrap="kafka:9092",
        triton_grpc_url="triton:8001",
        kafka_broker_kind=kind,  # type: ignore[arg-type]
        kafka_producer_acks=acks,  # type: ignore[arg-type]
        topic_replication_factor=3,
    )
    app = create_app(settings, StreamMetrics.create()).app
    assert type(app.producer).__name__ == producer
    assert app.producer.acks == (-1 if acks == "all" else 1)
    assert dict(app.producer._settings_extra()).get("enable_idempotence", False) is idempotent
    assert app.conf.topic_replication_factor == 3  # the windows changelog's too


def test_the_presentation_follows_the_settings_and_a_bad_catalogue_stops_the_start(tmp_path: Path) -> None:
    catalogue = tmp_path / "catalogue.jsonl"
    catalogue.write_text(
        '{"item_id": "i1", "title": "Red tent"}\n\n{"item_id": "i2", "title": "Blue tent"}\n'
    )
    chosen = presentation(Settings(catalogue_path=catalogue, diversity=0.2, exploration_slots=2))
    assert chosen.titles == {"i1": "Red tent", "i2": "Blue tent"}
    assert (chosen.policy.diversity, chosen.policy.exploration_slots) == (0.2, 2)
    catalogue.write_text('{"item_id": "i1", "title": "Red tent"}\n{"item_id": "i2"}\n')
    with pytest.raises(SettingsError, match=r"catalogue.jsonl:2: expected"):
        presentation(Settings(catalogue_path=catalogue))
    with pytest.raises(SettingsError, match="NEXTACTION_CATALOGUE_PATH"):
        presentation(Settings(catalogue_path=tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="exploration_slots cannot exceed published_top_k"):
        Settings(exploration_slots=3, published_top_k=2)
