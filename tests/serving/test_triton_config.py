"""The committed Triton configurations are what export writes for the default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.triton_config import CONFIG_FILES, SERVED_TOP_K, model_config_text

pytestmark = pytest.mark.unit

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "nextaction"


@pytest.mark.parametrize("device", sorted(CONFIG_FILES))
def test_committed_configs_match_what_export_writes(device: str) -> None:
    committed = (MODEL_DIR / CONFIG_FILES[device]).read_text()  # type: ignore[index]
    assert committed == model_config_text("nextaction", window=50, top_k=SERVED_TOP_K, device=device)  # type: ignore[arg-type]
