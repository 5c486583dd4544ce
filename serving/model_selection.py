"""Choices made on validation data once networks are trained: a distilled network or its
teacher, how many networks to average and the weight of the transition prior."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from serving.baselines import top_successors
from serving.data import TrainingSamples, UserSequence
from serving.evaluation import Cases, Catalogue, evaluate
from serving.model import NextActionModel
from serving.train_config import TrainConfig
from serving.training_run import TrainingRun, model_scorer

__all__ = ["FitData", "add_networks", "choose_prior_weight", "distil"]


def choose_prior_weight(
    model: NextActionModel,
    train: Sequence[UserSequence],
    validation: Cases,
    catalogue: Catalogue,
    weights: Sequence[float],
) -> dict[str, float]:
    """Give the trained model the transition prior with the weight of the best validation
    NDCG@10 (ties: the smaller weight); returns NDCG@10 by weight."""
    successors, counts = (
        torch.from_numpy(x) for x in top_successors(catalogue, train, model.config.successors)
    )
    score = model_scorer(model, catalogue.vocab)
    race: dict[str, float] = {}
    for weight in sorted(weights or (0.0,)):
        model.set_transition_prior(successors, counts, weight)
        race[f"{weight:g}"] = evaluate(score, validation, catalogue).ndcg[10]
    best = max(race, key=lambda w: race[w])  # first (smallest) of equals
    model.set_transition_prior(successors, counts, float(best))
    return race


def _new_run(
    like: TrainingRun,
    config: TrainConfig,
    budget_s: float | None,
    seed: int,
    teacher: NextActionModel | None = None,
) -> TrainingRun:
    """A run of a new network like ``like``'s (architecture, catalogue, item graph), from the
    initial weights ``seed`` draws."""
    torch.manual_seed(seed)
    model = NextActionModel(replace(like.model.config, networks=1))
    return TrainingRun(model, like.catalogue, config, budget_s, like.graph, teacher=teacher)


@dataclass(frozen=True)
class FitData:
    """What every network of one training fits and is validated on, and how it reports."""

    samples: TrainingSamples
    validation: Cases
    generator: torch.Generator
    progress: bool

    def fit(self, run: TrainingRun, label: str) -> NextActionModel:
        return run.fit(self.samples, self.validation, self.generator, label, self.progress)


def distil(
    teacher: TrainingRun, data: FitData, config: TrainConfig, budget_s: float | None
) -> tuple[TrainingRun, dict[str, float]]:
    """Train a student like the teacher (new initial weights, ``budget_s``) on the labels and
    the teacher's predictions (``config.distillation``); returns the run with the better
    validation NDCG@10 (ties: the teacher) and both scores."""
    # Apart from the seeds add_networks gives its networks (seed + 1 ... seed + max - 1).
    student = _new_run(teacher, config, budget_s, config.seed + config.max_networks, teacher.finish())
    data.fit(student, "student")
    race = {"teacher": teacher.best.ndcg10, "student": student.best.ndcg10}
    return (student if student.best.ndcg10 > teacher.best.ndcg10 else teacher), race


def add_networks(
    first: TrainingRun, data: FitData, config: TrainConfig, budget_s: float | None
) -> tuple[NextActionModel, dict[str, float], list[list[dict[str, float]]]]:
    """Train up to ``config.max_networks - 1`` further networks like the first (new initial
    weights, ``budget_s`` each) and keep each one whose mean with those kept so far raises
    validation NDCG@10 by at least ``network_min_gain``. Returns the model, validation NDCG@10
    by networks tried, and the histories of the networks trained here."""
    model, score = first.finish(), first.best.ndcg10
    race, histories = {"1": score}, list[list[dict[str, float]]]()
    for index in range(1, config.max_networks):
        run = _new_run(first, config, budget_s, config.seed + index)
        member = data.fit(run, f"network {index + 1}")
        histories.append([asdict(r) for r in run.history])
        candidate = NextActionModel.ensemble([model, member])
        candidate_score = evaluate(
            model_scorer(candidate, first.catalogue.vocab), data.validation, first.catalogue
        ).ndcg[10]
        race[str(index + 1)] = candidate_score
        if candidate_score < score * (1 + config.network_min_gain):
            break
        model, score = candidate, candidate_score
    return model, race, histories
