"""Training's choices: the dropout race and whether a second network is kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def test_dropout_race_keeps_the_choice_with_the_best_validation_ndcg(tmp_path: Path) -> None:
    from serving.datasets import load_dataset
    from serving.train import TrainConfig, train

    lines = "".join(f"{u} {' '.join(str((u * 7 + n) % 23) for n in range(8))}\n" for u in range(40))
    (tmp_path / "lines.txt").write_text(lines)
    sequences = load_dataset(tmp_path / "lines.txt", "user-lines").sequences
    config = TrainConfig(epochs=6, dropout_choices=(0.0, 0.6), race_share=0.5, seed=1)
    checkpoint = train(sequences, tmp_path / "ckpt", train_config=config, progress=False)
    race = checkpoint.metrics["dropout_race"]
    assert set(race) == {"dropout=0.0", "dropout=0.6"}
    assert checkpoint.metrics["dropout"] == float(max(race, key=race.__getitem__).split("=")[1])
    assert checkpoint.model.config.dropout == checkpoint.metrics["dropout"]
    assert checkpoint.metrics["epochs_run"] == len(checkpoint.metrics["history"]) <= 6


@pytest.mark.parametrize(("min_gain", "kept"), [(-1.0, 2), (10.0, 1)], ids=["any-gain", "impossible-gain"])
def test_a_second_network_is_kept_only_when_it_raises_validation_ndcg_enough(
    tmp_path: Path, min_gain: float, kept: int
) -> None:
    import torch

    from serving.checkpoint import load_checkpoint
    from serving.datasets import load_dataset
    from serving.export import export
    from serving.model import NextActionModel
    from serving.train import TrainConfig, train

    lines = "".join(f"{u} {' '.join(str((u * 5 + n) % 211) for n in range(8))}\n" for u in range(60))
    (tmp_path / "lines.txt").write_text(lines)
    sequences = load_dataset(tmp_path / "lines.txt", "user-lines").sequences
    config = TrainConfig(epochs=3, dropout_choices=(), network_min_gain=min_gain, prior_weights=(0.0,))
    train(sequences, tmp_path / "ckpt", train_config=config, progress=False)
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    metrics = checkpoint.metrics
    assert set(metrics["network_race"]) == {"1", "2"} and len(metrics["member_histories"]) == 1
    assert metrics["networks"] == checkpoint.model.config.networks == len(checkpoint.model.networks) == kept
    if kept == 2:
        # The model scores with the mean of its networks' scores.
        alone = []
        for network in checkpoint.model.item_networks:
            model = NextActionModel(replace(checkpoint.model.config, networks=1)).eval()
            model.item_networks[0].load_state_dict(network.state_dict())
            alone.append(model)
        items = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
        actions, gaps = (items > 0).long(), (items > 0).long()
        with torch.no_grad():
            mean = (alone[0].predict(items, actions, gaps) + alone[1].predict(items, actions, gaps)) / 2
            torch.testing.assert_close(checkpoint.model.predict(items, actions, gaps), mean)
    # The export checks the ONNX graph against torch, so both shapes of model serve.
    assert (export(tmp_path / "ckpt", tmp_path / "repository") / "model.onnx").is_file()
