"""The exported graph: top-k items, their probabilities and leave-one-event-out attributions,
what the stream needs to re-rank them and word their explanations (the items' mutual
similarity, how each window event relates to each item, their popularity), and the next
event's action type and time with the same occlusion's attributions, in one batched pass
(``ServingModule``).

Shapes: B batch, W window, D hidden, V vocabulary, K top-k, P explained (occluded) positions,
A action types, Q gap quantile levels, F the window profile (serving.next_event).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from contract import FIRST_ITEM_INDEX, PAD_INDEX, SIGNAL_CODES
from serving.model import PRIOR_HISTORY, NextActionModel
from serving.network import ItemNetwork, LowPass, key_mask
from serving.next_event import event_profiles, gap_seconds, profile_shares

__all__ = [
    "EXPLAIN_POSITIONS",
    "MIN_DROP",
    "SIMILAR_SHARE",
    "ServedOutputs",
    "ServingModule",
    "similar_cosine",
]

# Newest window events whose removal is measured by default. The stream cites at most 5 events;
# the occluded windows cost (P - 1)^2 trunk columns besides 2W, so each position beyond these
# costs serving time (docs/2026-11-model-experiments.md).
EXPLAIN_POSITIONS = 8

# Noise floor (nats) subtracted from log-probability drops in attributions: about a 0.1%
# change of probability, far above float32 rounding and far below any real effect.
MIN_DROP = 1e-3

# Share of random item pairs whose embeddings are close enough to call the items similar.
SIMILAR_SHARE = 0.02


def _tail_offsets(explain_positions: int) -> torch.Tensor:
    """int64 [P - 1, P - 1]: where the newest P - 1 columns of the occluded windows come from.

    Row r is the window without position ``W - P + r``, column j its column ``W - P + 1 + j``;
    values index the window with a pad prepended, less ``W - P + 1``. Columns up to the
    removed event hold the event before them (j), later ones their own (j + 1).
    """
    columns = torch.arange(explain_positions - 1)
    return columns + (columns >= columns.unsqueeze(1)).long()


def _recent_offsets(explain_positions: int) -> torch.Tensor:
    """int64 [P + 1, H]: where the newest H = PRIOR_HISTORY events of each variant come from,
    as offsets back from the original window's newest event (0: the newest itself).

    Row r < P is the window without position ``W - P + r`` (offset ``P - 1 - r``), in the
    order of ``last_hidden``; the last row is the original window.
    """
    rows = [
        [offset for offset in range(PRIOR_HISTORY + 1) if offset != explain_positions - 1 - row][
            :PRIOR_HISTORY
        ]
        for row in range(explain_positions)
    ]
    return torch.tensor([*rows, list(range(PRIOR_HISTORY))])


class ServedOutputs(NamedTuple):
    """What the graph returns per window (``contract.ONNX_OUTPUTS``, in this order)."""

    top_indices: torch.Tensor  # int64 [B, K]
    top_scores: torch.Tensor  # float [B, K] probabilities
    attributions: torch.Tensor  # float [B, K, W]
    similarities: torch.Tensor  # float [B, K, K] cosine of the top items' embeddings
    signals: torch.Tensor  # int8 [B, K, W] contract.SIGNAL_CODES
    popularity: torch.Tensor  # float [B, K] share of the catalogue at least as popular
    item_origins: torch.Tensor  # int8 [B, K] contract.LEARNED_ORIGIN or TEXT_ORIGIN
    next_actions: torch.Tensor  # float [B, A] probability of each action type next
    item_actions: torch.Tensor  # float [B, K, A] the same, given each top item as the next one
    gap_quantiles: torch.Tensor  # float [B, Q] seconds to the next event, contract.GAP_QUANTILE_LEVELS
    action_attributions: torch.Tensor  # float [B, A, W]


def similar_cosine(model: NextActionModel, pairs: int = 20_000, seed: int = 0) -> float:
    """The cosine above which two items count as similar: that of the closest
    ``SIMILAR_SHARE`` of random item pairs, so the bar is the same for every data set."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return _closest_share_cosine(model, pairs, generator)


def _closest_share_cosine(model: NextActionModel, pairs: int, generator: torch.Generator) -> float:
    known = model.config.n_items - FIRST_ITEM_INDEX
    if known < 2:
        return 1.0
    picks = torch.randint(FIRST_ITEM_INDEX, model.config.n_items, (2, pairs), generator=generator)
    table = model.joined_item_table()
    joined = [table[side] for side in picks]
    cosine = nn.functional.cosine_similarity(joined[0], joined[1], dim=-1)
    return float(torch.quantile(cosine[picks[0] != picks[1]], 1.0 - SIMILAR_SHARE))


class ServingModule(nn.Module):
    """Top-k items with probabilities and leave-one-event-out attributions, all in one graph.

    The attribution of window event j to item i is the drop in log p(i) when j is removed,
    less ``MIN_DROP``, clamped at 0 and normalised over the window (all zero when no removal
    lowers p(i) by more than ``MIN_DROP``).
    Only the newest ``explain_positions`` (P) events are occluded; older ones get 0.

    Removing event p shifts the older events one column right, so every occluded window
    starts with the same columns: those of the window shifted right by one. A causal trunk
    gives those columns the same keys and values in every occluded window, so one pass over
    the shifted window serves them all, and each occluded window only recomputes its newest
    P - 1 columns: 2W + (P - 1)^2 trunk columns per window instead of (P + 1) W. Those columns'
    low-pass inputs continue from the prefix's running sums, which are causal as well.
    """

    tail_offsets: torch.Tensor  # int64 [P - 1, P - 1] buffer, see last_hidden
    recent_offsets: torch.Tensor  # int64 [P + 1, PRIOR_HISTORY] buffer, see _recent_offsets
    popularity_rank: torch.Tensor  # float [V] buffer: share of the catalogue at least as popular
    similar_cosine: torch.Tensor  # float [] buffer, see similar_cosine()
    text_items: torch.Tensor  # bool [V] buffer: items added from their texts after training

    def __init__(
        self, model: NextActionModel, top_k: int = 20, explain_positions: int = EXPLAIN_POSITIONS
    ) -> None:
        """Windows may have any width from ``explain_positions`` to the trained window: the
        newest events are kept, and leading columns that are padding in every row of a batch
        can be cut (the positions count back from the newest, so nothing else changes)."""
        super().__init__()
        if not 0 < explain_positions <= model.config.window:
            raise ValueError(f"explain_positions must lie in 1..{model.config.window}")
        if not 0 < top_k <= model.config.n_items - 2:
            raise ValueError("top_k must be at least 1 and at most the number of known items")
        self.model = model
        self.top_k = top_k
        self.explain_positions = explain_positions
        # Occluded windows but the last (the shifted window itself), see last_hidden.
        self.register_buffer("tail_offsets", _tail_offsets(explain_positions), persistent=False)
        self.register_buffer("recent_offsets", _recent_offsets(explain_positions), persistent=False)
        # The vocabulary is ordered by training count, most frequent first.
        rank = (torch.arange(model.config.n_items) - FIRST_ITEM_INDEX + 1).clamp(min=0)
        self.register_buffer("popularity_rank", rank.float() / (model.config.n_items - FIRST_ITEM_INDEX))
        self.register_buffer("similar_cosine", torch.tensor(similar_cosine(model)))
        learned = model.config.learned_items or model.config.n_items
        self.register_buffer("text_items", torch.arange(model.config.n_items) >= learned)

    def last_hidden(
        self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per network, the final hidden state of the P occluded windows then the original,
        [B * (P + 1), D]."""
        return [
            self._network_last_hidden(network, items, actions, gaps) for network in self.model.item_networks
        ]

    def _network_last_hidden(
        self, model: ItemNetwork, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor
    ) -> torch.Tensor:
        tails = self.tail_offsets.shape[0]
        padded = [torch.cat([torch.zeros_like(x[:, :1]), x], dim=1) for x in (items, actions, gaps)]
        # Per window, the original and the shifted window (= the newest event removed), in one
        # pass. Rows are interleaved rather than split at B, which would fix B when exporting.
        both_items, both_actions, both_gaps = (
            torch.stack([x[:, 1:], x[:, :-1]], dim=1).flatten(0, 1) for x in padded
        )  # [2B, W] each
        attendable = key_mask(both_items)
        embedded, lowpass = model.embed(both_items, both_actions, both_gaps)
        hidden, cache = model.layers(embedded, attendable, newest_only=True)
        last = model.trunk.ln_f(hidden[:, -1]).unflatten(0, (-1, 2))  # [B, 2, D]
        occluded = [last[:, 1:]]
        if tails:
            # The other occluded windows: their newest P - 1 columns after the shared prefix.
            prefix = items.shape[1] - tails

            def per_tail(x: torch.Tensor, column_dim: int, start: int = 0) -> torch.Tensor:
                """The shifted windows' prefix columns from ``start``, once per occluded window."""
                shifted = x.unflatten(0, (-1, 2))[:, 1]
                return shifted.narrow(column_dim, start, prefix - start).repeat_interleave(tails, dim=0)

            gather = self.tail_offsets + prefix
            tail_items, tail_actions, tail_gaps = (
                x[:, gather].flatten(0, 1) for x in padded
            )  # [B(P-1), P-1]
            mask = torch.cat([per_tail(attendable, 1), key_mask(tail_items)], dim=1)
            past = [(per_tail(key, 2), per_tail(value, 2)) for key, value in cache]
            carry = LowPass(*(per_tail(x, 1, start=prefix - 1) for x in lowpass))
            embedded, _ = model.embed(tail_items, tail_actions, tail_gaps, carry)
            hidden, _ = model.layers(embedded, mask, past, newest_only=True)
            occluded.insert(0, model.trunk.ln_f(hidden[:, -1]).unflatten(0, (-1, tails)))
        return torch.cat([*occluded, last[:, :1]], dim=1).flatten(0, 1)

    def forward(
        self,
        items: torch.Tensor,
        actions: torch.Tensor,
        gap_buckets: torch.Tensor,
        popularity_adjustment: torch.Tensor | None = None,
    ) -> ServedOutputs:
        """``popularity_adjustment`` float [B, 1]: the strength of the popularity correction
        per window (0 when not given)."""
        batch, window = items.shape
        variants = self.explain_positions + 1
        strength = popularity_adjustment if popularity_adjustment is not None else items.new_zeros(batch, 1)
        hidden = self.last_hidden(items, actions, gap_buckets)  # [B*(P+1), D]
        # Every variant keeps the whole window's candidate set: a removed event must not bring
        # its own item back and dilute the others' probabilities.
        seen = items.unsqueeze(1).expand(-1, variants, -1).reshape(batch * variants, window)
        # The transition prior of each variant follows its own newest events, so removing one
        # of them takes its successors' share out of the scores as well.
        newest_first = torch.cat([torch.zeros_like(items[:, : PRIOR_HISTORY + 1]), items], dim=1)
        newest_first = newest_first[:, -(PRIOR_HISTORY + 1) :].flip(1)  # [B, H + 1]
        recent = newest_first[:, self.recent_offsets].flatten(0, 1)  # [B*(P+1), H]
        logits = self.model.add_transition_prior(self.model.item_logits(hidden), recent)
        logits = self.model.popularity_adjusted(logits, strength.float().repeat_interleave(variants, dim=0))
        logits = self.model.exclude(logits, seen)
        log_probs = torch.log_softmax(logits, dim=-1)  # [B*(P+1), V]
        log_probs = log_probs.reshape(batch, variants, -1)  # [B, P+1, V]
        base = log_probs[:, -1]  # [B, V]
        top_log_probs, top_indices = torch.topk(base, self.top_k, dim=-1)  # [B, K]
        index = top_indices.unsqueeze(1).expand(-1, variants - 1, -1)  # [B, P, K]
        occluded = torch.gather(log_probs[:, :-1], 2, index)  # [B, P, K]
        profiles = self._variant_profiles(actions, gap_buckets)  # [B*(P+1), F]
        action_log_probs = torch.log_softmax(self.model.action_logits(hidden, profiles), dim=-1)
        action_log_probs = action_log_probs.reshape(batch, variants, -1)  # [B, P+1, A]
        newest = [h.unflatten(0, (batch, variants))[:, -1] for h in hidden]  # [B, D] per network
        window_profiles = profiles.unflatten(0, (batch, variants))[:, -1]  # [B, F]
        top_vectors = self._unit_embeddings(top_indices)  # [B, K, D']
        return ServedOutputs(
            top_indices,
            top_log_probs.exp(),
            self._attributions(items, top_log_probs, occluded),
            top_vectors @ top_vectors.transpose(1, 2),
            self._signals(items, top_indices, top_vectors),
            self.popularity_rank[top_indices],
            self.text_items[top_indices].to(torch.int8),
            action_log_probs[:, -1].exp(),
            torch.softmax(self.model.item_action_logits(newest, top_indices), dim=-1),
            gap_seconds(self.model.log_gap_quantiles(newest, window_profiles)),
            self._attributions(items, action_log_probs[:, -1], action_log_probs[:, :-1]),
        )

    def _variant_profiles(self, actions: torch.Tensor, gap_buckets: torch.Tensor) -> torch.Tensor:
        """Profiles [B * (P + 1), F] of the P occluded windows then the original: the original's
        counts less the removed event (the others keep their gap buckets, as in last_hidden)."""
        events = event_profiles(actions, gap_buckets)  # [B, W, F]
        counts = events.sum(dim=1, keepdim=True)  # [B, 1, F]
        removed = events[:, -self.explain_positions :]  # [B, P, F]
        return profile_shares(torch.cat([counts - removed, counts], dim=1)).flatten(0, 1)

    def _attributions(
        self, items: torch.Tensor, log_probs: torch.Tensor, occluded: torch.Tensor
    ) -> torch.Tensor:
        """Weights [B, X, W] of the window's events for X outcomes, from their log-probabilities
        [B, X] and those with each explained position removed [B, P, X]."""
        batch, window = items.shape
        # Evidence is the drop above a noise floor. Subtracting the floor (not cutting at it)
        # keeps weights continuous, so rounding differences between runtimes stay small.
        drop = (log_probs.unsqueeze(1) - occluded - MIN_DROP).clamp(min=0)  # [B, P, X]
        # Padding never explains anything (its removal is a no-op up to rounding).
        explained = items[:, window - self.explain_positions :] != PAD_INDEX  # [B, P]
        drop = drop * explained.unsqueeze(-1).to(drop.dtype)
        total = drop.sum(dim=1, keepdim=True)  # [B, 1, X]
        weights = torch.where(total > 0, drop / total.clamp(min=1e-12), torch.zeros_like(drop))
        older = drop.new_zeros(batch, window - self.explain_positions, drop.shape[2])
        return torch.cat([older, weights], dim=1).transpose(1, 2)  # [B, X, W]

    def _unit_embeddings(self, indices: torch.Tensor) -> torch.Tensor:
        """Items' embeddings of every network side by side, scaled to unit length: their dot
        products are cosine similarities the networks agree on. [..., D * networks]."""
        joined = torch.cat([network.item_embedding(indices) for network in self.model.item_networks], dim=-1)
        return joined / joined.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def _signals(self, items: torch.Tensor, top: torch.Tensor, top_vectors: torch.Tensor) -> torch.Tensor:
        """int8 [B, K, W]: how each window event relates to each top item (``contract.SIGNALS``)."""
        same = items.unsqueeze(1) == top.unsqueeze(2)  # [B, K, W]
        followers = self.model.successor_items[items]  # [B, W, S]
        # Pad entries of the successor table are index 0, which is never a top item.
        observed = (followers.unsqueeze(1) == top[:, :, None, None]).any(dim=-1)
        similar = top_vectors @ self._unit_embeddings(items).transpose(1, 2) >= self.similar_cosine
        kinds = torch.where(
            same,
            SIGNAL_CODES["same_item"],
            torch.where(
                observed,
                SIGNAL_CODES["sequence_pattern"],
                torch.where(similar, SIGNAL_CODES["similar_item"], SIGNAL_CODES["context"]),
            ),
        )
        return torch.where(items.unsqueeze(1) != PAD_INDEX, kinds, 0).to(torch.int8)
