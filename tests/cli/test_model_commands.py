"""The serving command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from serving.cli import main
from serving.data import read_events_jsonl

pytestmark = pytest.mark.unit


def test_generate_writes_events_and_planted_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, pairs = tmp_path / "events.jsonl", tmp_path / "pairs.json"
    argv = ["generate", "--out", str(out), "--users", "20", "--items", "60", "--seed", "5"]
    assert main([*argv, "--pairs-out", str(pairs)]) == 0
    events = list(read_events_jsonl(out))
    assert len({e["user_id"] for e in events}) == 20
    assert f"wrote {len(events)} events" in capsys.readouterr().out
    assert json.loads(pairs.read_text())


def test_train_rejects_an_unknown_data_format(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "x.csv"), "--format", "csv", "--out", str(tmp_path)])


def test_train_on_user_lines_reports_model_and_baselines(tmp_path: Path) -> None:
    lines = "".join(f"{u} {' '.join(str((u + n) % 9) for n in range(6))}\n" for u in range(12))
    (tmp_path / "lines.txt").write_text(lines)
    out = tmp_path / "checkpoint"
    argv = ["train", "--data", str(tmp_path / "lines.txt"), "--format", "user-lines", "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--window", "4", "--hidden", "8", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"model", "popularity", "transition"}
    # No user ever returns to an item here, so the model learns and serves unseen items only.
    assert metrics["repeat_share"] == 0 and metrics["exclude_seen"] is True
    for result in metrics["results"].values():
        assert result["validation"]["users"] == result["test"]["users"] == 12
        assert {"hr@5", "ndcg@20", "coverage@10", "long_tail@10"} <= result["test"].keys()
    # Every user's next item is its last item + 1 (mod 9): the transition baseline gets it.
    assert metrics["results"]["transition"]["test"]["hr@5"] == 1.0
    assert (out / "training_curve.png").exists() and (out / "weights.pt").exists()


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

    from serving.datasets import load_dataset
    from serving.export import export
    from serving.model import NextActionModel
    from serving.train import TrainConfig, load_checkpoint, train

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
