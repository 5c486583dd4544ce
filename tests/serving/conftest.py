"""Serving fixtures: one synthetic data set, one small trained model and one export per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serving_fixtures import SYNTHETIC, TRAINING, PlantedCases, is_heldout, planted_cases

from serving.checkpoint import Checkpoint, load_checkpoint
from serving.data import user_sequences
from serving.export import export
from serving.synthetic import generate_events
from serving.train import train


@pytest.fixture(scope="session")
def synthetic_events() -> list[dict[str, Any]]:
    return generate_events(SYNTHETIC)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_events: list[dict[str, Any]]) -> Path:
    out = tmp_path_factory.mktemp("checkpoint")
    training_events = [e for e in synthetic_events if not is_heldout(e["user_id"])]
    train(user_sequences(training_events), out, train_config=TRAINING, progress=False)
    return out


@pytest.fixture(scope="session")
def checkpoint(checkpoint_dir: Path) -> Checkpoint:
    return load_checkpoint(checkpoint_dir)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repository")


@pytest.fixture(scope="session")
def version_dir(checkpoint_dir: Path, repository: Path) -> Path:
    return export(checkpoint_dir, repository)


@pytest.fixture(scope="session")
def planted(synthetic_events: list[dict[str, Any]]) -> dict[str, PlantedCases]:
    return planted_cases(e for e in synthetic_events if is_heldout(e["user_id"]))
