"""Training's schedule and choices: the learning rate over the budget, whether a second network
is kept."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _sequences(tmp_path: Path, users: int, items: int, stride: int) -> list:
    from serving.datasets import load_dataset

    lines = "".join(
        f"{u} {' '.join(str((u * stride + n) % items) for n in range(8))}\n" for u in range(users)
    )
    (tmp_path / "lines.txt").write_text(lines)
    return load_dataset(tmp_path / "lines.txt", "user-lines").sequences


class _Clock:
    """A clock that advances a fixed step each time it is read."""

    def __init__(self, step_s: float) -> None:
        self.now, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


@pytest.mark.parametrize("budget_s", [None, 60.0], ids=["epochs-end-first", "time-ends-first"])
def test_the_learning_rate_anneals_to_zero_over_epochs_or_time_whichever_ends_first(
    tmp_path: Path, budget_s: float | None
) -> None:
    import torch

    from serving.data import training_samples
    from serving.evaluation import Catalogue, leave_one_out
    from serving.model import ModelConfig, NextActionModel
    from serving.train import TrainConfig
    from serving.training_run import TrainingRun

    split = leave_one_out(_sequences(tmp_path, users=40, items=23, stride=7))
    catalogue = Catalogue.of(split.train)
    model = NextActionModel(ModelConfig(n_items=len(catalogue.vocab), window=8))
    config = TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, patience=100, threads=1)
    samples = training_samples(split.train, catalogue.vocab, 8)
    run = TrainingRun(model, catalogue, config, budget_s, clock=_Clock(1.0))
    rates: list[float] = []
    run.optimizer.register_step_pre_hook(lambda opt, *_: rates.append(opt.param_groups[0]["lr"]))
    run.fit(samples, split.validation, torch.Generator().manual_seed(0), "test", progress=False)

    assert run.progress() == 1.0
    if budget_s is None:
        assert len(run.history) == 8
    else:  # the clock reads 1 s more at each batch: 60 s end within the fourth epoch
        assert len(run.history) < 8 and run.history[-2].seconds < budget_s
    assert rates[0] == pytest.approx(1e-2, rel=0.05) and rates[-1] < 1e-3
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates))


@pytest.mark.parametrize(("min_gain", "kept"), [(-1.0, 2), (10.0, 1)], ids=["any-gain", "impossible-gain"])
def test_a_second_network_is_kept_only_when_it_raises_validation_ndcg_enough(
    tmp_path: Path, min_gain: float, kept: int
) -> None:
    import torch

    from serving.checkpoint import load_checkpoint
    from serving.export import export
    from serving.model import NextActionModel
    from serving.train import TrainConfig, train

    sequences = _sequences(tmp_path, users=60, items=211, stride=5)
    config = TrainConfig(epochs=3, max_networks=2, network_min_gain=min_gain, prior_weights=(0.0,))
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
        # The export checks the ONNX graph against torch, so this shape of model serves too
        # (the session's export covers one network).
        assert (export(tmp_path / "ckpt", tmp_path / "repository") / "model.onnx").is_file()


def test_the_distillation_loss_is_least_where_the_student_predicts_as_the_teacher() -> None:
    import torch

    from serving.training_run import distillation_loss

    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 30, generator=generator) * 3
    teacher[:, :2] = float("-inf")  # excluded items, as the model writes them
    other = torch.randn(4, 30, generator=generator) * 3
    other[:, :2] = float("-inf")

    own = distillation_loss(teacher, teacher)
    assert torch.isfinite(own)
    assert own < distillation_loss(other, teacher)
    assert own < distillation_loss(teacher + 0.5 * other.nan_to_num(neginf=0.0), teacher)
    # A teacher sure of one item asks for the label's cross-entropy.
    sure = torch.full((4, 30), float("-inf")).index_fill(1, torch.tensor([5]), 0.0)
    labels = torch.full((4,), 5)
    torch.testing.assert_close(
        distillation_loss(other, sure), torch.nn.functional.cross_entropy(other, labels)
    )


def test_a_student_trained_on_the_teacher_predicts_closer_to_it_than_one_trained_on_labels(
    tmp_path: Path,
) -> None:
    import torch

    from serving.data import encode_windows, training_samples
    from serving.evaluation import Catalogue, leave_one_out
    from serving.model import ModelConfig, NextActionModel
    from serving.train import TrainConfig
    from serving.training_run import TrainingRun, distillation_loss

    split = leave_one_out(_sequences(tmp_path, users=40, items=23, stride=7))
    catalogue = Catalogue.of(split.train)
    architecture = ModelConfig(n_items=len(catalogue.vocab), window=8)
    samples = training_samples(split.train, catalogue.vocab, 8)
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=1e-2, patience=100, threads=1)
    torch.manual_seed(0)
    teacher = TrainingRun(NextActionModel(architecture), catalogue, config, None).fit(
        samples, split.validation, torch.Generator().manual_seed(0), "teacher", progress=False
    )
    windows = [torch.from_numpy(x) for x in encode_windows(split.test.inputs, catalogue.vocab, 8)]

    def divergence_from_teacher(share: float) -> float:
        torch.manual_seed(1)  # the same initial student both times
        student = TrainingRun(
            NextActionModel(architecture),
            catalogue,
            replace(config, distillation=share),
            None,
            teacher=teacher,
        ).fit(samples, split.validation, torch.Generator().manual_seed(1), "student", progress=False)
        with torch.no_grad():
            target = teacher.item_logits(teacher.newest_hidden(*windows))
            own = student.item_logits(student.newest_hidden(*windows))
        # Cross-entropy to the teacher: its divergence from the teacher plus a constant.
        return float(distillation_loss(own, target) - distillation_loss(target, target))

    distilled, labelled = divergence_from_teacher(1.0), divergence_from_teacher(0.0)
    assert distilled < 0.7 * labelled  # about half on this data


def test_training_keeps_the_distilled_student_only_when_it_validates_better(tmp_path: Path) -> None:
    from serving.checkpoint import load_checkpoint
    from serving.train import TrainConfig, train

    sequences = _sequences(tmp_path, users=60, items=211, stride=5)
    config = TrainConfig(epochs=3, distillation=0.5, prior_weights=(0.0,))
    train(sequences, tmp_path / "ckpt", train_config=config, progress=False)
    metrics = load_checkpoint(tmp_path / "ckpt").metrics
    race = metrics["distillation_race"]
    assert set(race) == {"teacher", "student"} and len(metrics["teacher_history"]) == 3
    assert metrics["ndcg@10"] == max(race.values())
    kept = "student" if race["student"] > race["teacher"] else "teacher"
    assert metrics["ndcg@10"] == race[kept] and metrics["networks"] == 1

    with pytest.raises(ValueError, match="distillation"):
        train(sequences, tmp_path / "bad", train_config=TrainConfig(distillation=1.5), progress=False)
