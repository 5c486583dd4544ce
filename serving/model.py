"""The next-item model: the mean score of one or more networks, plus a transition prior.

Training and serving score the same thing: the items after the newest event of a window
(training has one window per target, see ``serving.data.TrainingSamples``). A network's item
scores are dot products with its item embedding matrix (tied input/output embeddings). The
model averages the scores of networks trained apart and adds a transition prior: how often
each item followed the newest few events in the training data
(``NextActionModel.add_transition_prior``), with a weight that training picks on validation
data after the networks are trained.

Shapes: B batch, W window, D hidden, V vocabulary (items + pad + unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import torch
from torch import nn

from contract import PAD_INDEX, UNKNOWN_INDEX
from serving.model_config import ModelConfig
from serving.network import ItemNetwork
from serving.next_event import NextEventTargets

__all__ = ["PRIOR_DECAY", "PRIOR_HISTORY", "ModelConfig", "NextActionModel", "log_popularity"]

# Newest window events whose observed successors the transition prior adds, each counting
# PRIOR_DECAY times the next newer one: the newest events say most about what follows, and
# a few of them beat the newest alone on validation (docs/2026-11-model-experiments.md).
PRIOR_HISTORY = 3
PRIOR_DECAY = 0.5


def log_popularity(counts: torch.Tensor) -> torch.Tensor:
    """float [V]: the log share of each item in the training interactions ``counts`` [V].
    Add-one smoothing keeps an item the data never showed finite: the least exposed, not
    impossible."""
    smoothed = counts.double() + 1.0
    return torch.log(smoothed / smoothed.sum()).float()


class NextActionModel(nn.Module):
    """``config.networks`` item networks whose mean score, plus the transition prior, ranks
    the catalogue. Averaging logits is averaging log-probabilities up to a per-row constant,
    which the softmax removes: the served probabilities are the networks' normalised
    geometric mean, tilted by the prior."""

    excluded: torch.Tensor  # int64 [2] buffer: pad and unknown, never recommended
    successor_items: torch.Tensor  # int64 [V, S] buffer, pad where an item has fewer successors
    successor_scores: torch.Tensor  # float [V, S] buffer, log(1 + count); 0 on pad entries
    prior_weight: torch.Tensor  # float [] buffer
    log_popularity: torch.Tensor  # float [V] buffer: log share of training interactions, smoothed

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.networks = nn.ModuleList(ItemNetwork(config) for _ in range(config.networks))
        # Padding and unknown are never recommended: their scores are masked out.
        self.register_buffer("excluded", torch.tensor([PAD_INDEX, UNKNOWN_INDEX]), persistent=False)
        # Transition prior: each item's most frequent successors, their log(1 + count), and
        # the weight of the prior (0 while the network trains). Saved with the weights.
        self.register_buffer(
            "successor_items", torch.zeros(config.n_items, config.successors, dtype=torch.int64)
        )
        self.register_buffer("successor_scores", torch.zeros(config.n_items, config.successors))
        self.register_buffer("prior_weight", torch.zeros(()))
        # Popularity the training data exposed each item with: what a popularity correction
        # subtracts (``popularity_adjusted``). Uniform until training sets it.
        self.register_buffer("log_popularity", torch.full((config.n_items,), -math.log(config.n_items or 1)))

    @property
    def item_networks(self) -> list[ItemNetwork]:
        return cast(list[ItemNetwork], list(self.networks))

    def joined_item_table(self) -> torch.Tensor:
        """Every network's item embeddings side by side, [V, networks * D]: the space the
        model's averaged scores are dot products in."""
        return torch.cat([network.item_embedding.weight for network in self.item_networks], dim=1)

    @staticmethod
    def ensemble(models: Sequence[NextActionModel]) -> NextActionModel:
        """One model of all the given models' networks (same architecture), prior weight 0."""
        config = replace(models[0].config, networks=sum(m.config.networks for m in models))
        joined = NextActionModel(config)
        networks = [network for model in models for network in model.item_networks]
        for target, source in zip(joined.networks, networks, strict=True):
            target.load_state_dict(source.state_dict())
        return joined.eval()

    def item_logits(self, hiddens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each network's hidden states [..., D] -> the mean of their item scores [..., V];
        pad and unknown at -inf."""
        if len(hiddens) == 1:
            logits = hiddens[0] @ self.item_networks[0].item_embedding.weight.T
        else:
            # One product over the joined hidden units rather than a [..., V] matrix per network
            # to average: the [..., V] products are a large share of the cost of serving.
            logits = (torch.cat(list(hiddens), dim=-1) / len(hiddens)) @ self.joined_item_table().T
        # Writing the excluded entries by index spares a [..., V] mask per call.
        return logits.index_fill(-1, self.excluded, float("-inf"))

    def action_logits(self, hiddens: Sequence[torch.Tensor], profiles: torch.Tensor) -> torch.Tensor:
        """Each network's hidden states [N, D] and the windows' profiles [N, F]
        (:func:`serving.next_event.window_profile`) -> the mean next-action logits [N, A]."""
        heads = [network.next_event for network in self.item_networks]
        return torch.stack([h.action_logits(x, profiles) for h, x in zip(heads, hiddens, strict=True)]).mean(
            0
        )

    def item_action_logits(self, hiddens: Sequence[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Hidden states [N, D] and item indices [N, K] -> mean next-action logits given each
        item as the next one, [N, K, A]."""
        return torch.stack(
            [
                network.next_event.item_action_logits(hidden, network.item_embedding(items))
                for network, hidden in zip(self.item_networks, hiddens, strict=True)
            ]
        ).mean(0)

    def log_gap_quantiles(self, hiddens: Sequence[torch.Tensor], profiles: torch.Tensor) -> torch.Tensor:
        """Hidden states [N, D] and profiles [N, F] -> mean quantiles of log(1 + seconds to
        the next event) [N, Q]."""
        heads = [network.next_event for network in self.item_networks]
        return torch.stack(
            [h.log_gap_quantiles(x, profiles) for h, x in zip(heads, hiddens, strict=True)]
        ).mean(0)

    def next_event_loss(
        self,
        hiddens: Sequence[torch.Tensor],
        items: torch.Tensor,
        actions: torch.Tensor,
        gaps_s: torch.Tensor,
        profiles: torch.Tensor,
    ) -> torch.Tensor:
        """The next-event heads' loss (:meth:`NextEventHeads.loss`) summed over networks, for
        the next events' items [N], action indices [N] (0-based) and seconds [N] after windows
        of profiles [N, F]."""
        return torch.stack(
            [
                network.next_event.loss(
                    hidden, NextEventTargets(actions, network.item_embedding(items), gaps_s, profiles)
                )
                for network, hidden in zip(self.item_networks, hiddens, strict=True)
            ]
        ).sum()

    def exclude(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """logits [N, V] with the items of ``seen`` (indices [N, S], any padding) at -inf,
        when the model excludes seen items; unchanged otherwise."""
        if not self.config.exclude_seen:
            return logits
        return logits.scatter(1, seen, float("-inf"))

    def newest_hidden(
        self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each network's :meth:`ItemNetwork.newest_hidden`."""
        return [network.newest_hidden(items, actions, gaps) for network in self.item_networks]

    def set_transition_prior(self, successors: torch.Tensor, counts: torch.Tensor, weight: float) -> None:
        """Each item's most frequent successors and their counts, int64 [V, S] each (pad and
        count 0 where there are fewer), and the prior's weight."""
        with torch.no_grad():
            self.successor_items.copy_(successors)
            self.successor_scores.copy_(torch.log1p(counts.float()))
            self.prior_weight.fill_(weight)

    def set_popularity(self, counts: torch.Tensor) -> None:
        """Training interactions per vocabulary index, int64 [V]."""
        with torch.no_grad():
            self.log_popularity.copy_(log_popularity(counts))

    def popularity_adjusted(self, logits: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """logits [N, V] less ``strength`` [N, 1] times log popularity: a causal correction that
        removes the exposure effect popularity had on the logged data (logit adjustment,
        Menon et al. 2021; popularity deconfounding, Zhang et al. 2021). 0 leaves them as is."""
        return logits - strength * self.log_popularity

    def add_transition_prior(self, logits: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """logits [N, V] plus the transition prior of newest-first items [N, H] (H <=
        PRIOR_HISTORY, pads allowed): weight * sum over h of PRIOR_DECAY^h * log(1 + times
        item v followed item h). Scattered into the logits: a dense [N, V] prior would cost
        an allocation and an addition per variant on the serving path."""
        decay = PRIOR_DECAY ** torch.arange(recent.shape[1], device=recent.device, dtype=torch.float32)
        values = self.successor_scores[recent] * (self.prior_weight * decay)[None, :, None]  # [N, H, S]
        return logits.scatter_add(1, self.successor_items[recent].flatten(1), values.flatten(1))

    def predict(
        self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor, seen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference: next-item logits after the newest event, [B, V]. ``seen`` (indices
        [B, S]) replaces the window's items as the items excluded, e.g. to keep a window's
        candidates when some of its events are deleted."""
        logits = self.item_logits(self.newest_hidden(items, actions, gaps))
        logits = self.add_transition_prior(logits, items[:, -PRIOR_HISTORY:].flip(1))
        return self.exclude(logits, items if seen is None else seen)
