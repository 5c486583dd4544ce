"""Training one model: epochs over the samples, validation after each, the best state kept."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.utils import parametrize
from tqdm import tqdm

from contract import PAD_INDEX, UNKNOWN_INDEX
from serving.data import TrainingSamples, UserSequence, encode_windows
from serving.evaluation import Cases, Catalogue, ScoreFn, evaluate
from serving.item_graph import smooth_item_tables, write_in_smoothing
from serving.model import NextActionModel, log_popularity
from serving.next_event import window_profile
from serving.train_config import TrainConfig
from serving.vocab import ItemVocab

__all__ = ["EpochRecord", "TrainingRun", "annealed_rate", "distillation_loss", "model_scorer"]


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    hr10: float
    ndcg10: float
    seconds: float


def annealed_rate(peak: float, progress: float) -> float:
    """Cosine decay from ``peak`` at progress 0 to 0 at progress 1."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _hide_items(items: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random share of real input items by the unknown index."""
    hide = (torch.rand(items.shape, generator=generator) < rate) & (items != PAD_INDEX)
    return items.masked_fill(hide, UNKNOWN_INDEX)


def _batches(samples: TrainingSamples, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Sample indices of each batch: windows of about the same length together, so a batch is
    cut to its longest (little padding to compute), batches in random order."""
    jitter = torch.rand(len(samples), generator=generator) * 2  # shuffles near lengths
    chunks = torch.split(torch.argsort(torch.from_numpy(samples.lengths).float() + jitter), batch_size)
    return [chunks[i].numpy() for i in torch.randperm(len(chunks), generator=generator).tolist()]


def model_scorer(model: NextActionModel, vocab: ItemVocab) -> ScoreFn:
    """The model as an evaluation scoring callback: each input's newest window -> logits [B, V]."""
    window = model.config.window

    @torch.no_grad()
    def score(inputs: Sequence[UserSequence]) -> np.ndarray:
        model.eval()
        # Only the columns the longest input fills: positions count from the newest event.
        width = min(window, max(len(seq) for seq in inputs))
        items, actions, gaps = (torch.from_numpy(x) for x in encode_windows(inputs, vocab, width))
        return model.predict(items, actions, gaps).numpy()

    return score


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the logits [N, V] against the teacher's softmax over the same
    items; entries at -inf in both (excluded items) count for nothing."""
    teacher = F.softmax(teacher_logits, dim=-1)
    log_student = F.log_softmax(logits, dim=-1).masked_fill(teacher == 0, 0.0)
    return -(teacher * log_student).sum(-1).mean()


def train_epoch(
    model: NextActionModel,
    samples: TrainingSamples,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
    loss_offset: torch.Tensor | None,
    before_batch: Callable[[float], None],
    teacher: NextActionModel | None = None,
) -> float:
    """One pass over the samples; returns the mean item loss. ``loss_offset`` [V], if any, is
    added to the logits the item loss sees; ``before_batch`` gets the share of the epoch done.
    With a ``teacher``, the item loss also fits the teacher's predictions on the same windows,
    with weight ``config.distillation``."""
    model.train()
    total = 0.0
    batches = _batches(samples, config.batch_size, generator)
    for done, batch in enumerate(batches):
        before_batch(done / len(batches))
        items, actions, gaps, targets = (torch.from_numpy(x) for x in samples.windows(batch))
        next_actions, next_gaps = (torch.from_numpy(x) for x in samples.next_events(batch))
        # A smoothed item table (serving.item_graph) is computed once for the step's uses of it.
        with parametrize.cached():
            hidden = model.newest_hidden(_hide_items(items, config.unknown_rate, generator), actions, gaps)
            # Full softmax over all items; the window's items are out as in serving, but for
            # the target itself where it repeats one of them.
            seen = items.masked_fill(items == targets.unsqueeze(1), PAD_INDEX)
            logits = model.item_logits(hidden)
            if loss_offset is not None:
                logits = logits + loss_offset
            logits = model.exclude(logits, seen)
            item_loss = F.cross_entropy(logits, targets)
            if teacher is not None:
                with torch.no_grad():
                    # In the loss's own terms: a logit adjustment applies to both.
                    teacher_logits = teacher.item_logits(teacher.newest_hidden(items, actions, gaps))
                    if loss_offset is not None:
                        teacher_logits = teacher_logits + loss_offset
                    teacher_logits = teacher.exclude(teacher_logits, seen)
                share = config.distillation
                item_loss = (1 - share) * item_loss + share * distillation_loss(logits, teacher_logits)
            # The next-event heads learn from the detached state: the item loss alone shapes the trunk.
            profiles = window_profile(actions, gaps)
            heads_loss = model.next_event_loss(hidden, targets, next_actions, next_gaps.float(), profiles)
            optimizer.zero_grad()
            (item_loss + heads_loss).backward()
        optimizer.step()
        total += item_loss.item() * len(batch)
    return total / max(len(samples), 1)


class TrainingRun:
    """One model in training: its optimizer, learning-rate schedule, validation history and
    best state so far. With ``graph`` (:func:`serving.item_graph.neighbour_graph`) and a
    ``config.graph_share``, the item tables train smoothed over it; with a trained ``teacher``,
    the model learns from its predictions as well (see :func:`train_epoch`).

    The learning rate decays over the run's whole length, ``config.epochs`` or ``budget_s``
    seconds, whichever ends first, so a run ends annealed on a slow machine as on a fast one
    (fewer epochs there) instead of being cut off at a high rate.
    """

    def __init__(
        self,
        model: NextActionModel,
        catalogue: Catalogue,
        config: TrainConfig,
        budget_s: float | None,
        graph: torch.Tensor | None = None,
        clock: Callable[[], float] = time.monotonic,
        teacher: NextActionModel | None = None,
    ) -> None:
        self.model = model
        self.teacher = teacher
        self.graph = graph
        if graph is not None and config.graph_share > 0:
            smooth_item_tables(model.item_networks, graph, config.graph_share)
        self.config = config
        self.catalogue = catalogue
        self.budget_s = budget_s
        self.clock = clock
        self.started = clock()
        self.score = model_scorer(model, catalogue.vocab)
        self.loss_offset = (
            config.logit_adjustment * log_popularity(torch.from_numpy(catalogue.counts))
            if config.logit_adjustment
            else None
        )
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.history: list[EpochRecord] = []
        self.best = EpochRecord(0, float("inf"), 0.0, -1.0, 0.0)
        self._best_state = copy.deepcopy(model.state_dict())

    def progress(self, epoch_share: float = 0.0) -> float:
        """Share of the run done, by epochs or by time, whichever is further."""
        by_epochs = (len(self.history) + epoch_share) / self.config.epochs
        seconds = self.clock() - self.started
        by_time = 0.0 if self.budget_s is None else seconds / max(self.budget_s, 1e-9)
        return min(1.0, max(by_epochs, by_time))

    def _set_rate(self, epoch_share: float) -> None:
        rate = annealed_rate(self.config.learning_rate, self.progress(epoch_share))
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def step(
        self, samples: TrainingSamples, validation: Cases, generator: torch.Generator, seconds: float
    ) -> None:
        """One epoch, then validation; remembers the best state."""
        loss = train_epoch(
            self.model,
            samples,
            self.optimizer,
            self.config,
            generator,
            self.loss_offset,
            self._set_rate,
            self.teacher,
        )
        result = evaluate(self.score, validation, self.catalogue)
        record = EpochRecord(len(self.history) + 1, loss, result.hit_rate[10], result.ndcg[10], seconds)
        self.history.append(record)
        if record.ndcg10 > self.best.ndcg10:
            self.best, self._best_state = record, copy.deepcopy(self.model.state_dict())

    def done(self) -> bool:
        """The schedule has run out, or validation NDCG@10 has not improved for
        ``config.patience`` epochs."""
        return self.progress() >= 1.0 or len(self.history) - self.best.epoch >= self.config.patience

    def fit(
        self,
        samples: TrainingSamples,
        validation: Cases,
        generator: torch.Generator,
        label: str,
        progress: bool,
    ) -> NextActionModel:
        """Epochs until :meth:`done`; returns the model with its best validated state."""
        bar = tqdm(range(self.config.epochs), desc=label, unit="epoch", disable=not progress)
        for _ in bar:
            self.step(samples, validation, generator, self.clock() - self.started)
            latest = self.history[-1]
            bar.set_postfix(
                loss=f"{latest.loss:.3f}", ndcg10=f"{latest.ndcg10:.4f}", best=f"{self.best.ndcg10:.4f}"
            )
            if self.done():
                break
        bar.close()
        return self.finish()

    def finish(self) -> NextActionModel:
        """The model in its best validated state, item tables as they were used then."""
        self.model.load_state_dict(self._best_state)
        write_in_smoothing(self.model.item_networks)
        self._best_state = copy.deepcopy(self.model.state_dict())
        return self.model.eval()
