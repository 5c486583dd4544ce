"""Next-item Transformer over a user's event window, and the module exported for serving.

A ``transformers`` GPT-2 trunk (causal self-attention) runs on our own input embeddings:
item + action + time-gap bucket; our loop drives its blocks, so serving can hand one pass's
keys and values to the next (``ItemNetwork.layers``). Training and serving score the same
thing: the items after the newest event of a window (training has one window per target, see
``serving.data.TrainingSamples``). A network's item scores are dot products with its item
embedding matrix (tied input/output embeddings). The model averages the scores of one or more
networks trained apart (``NextActionModel``) and adds a transition prior: how often each item
followed the newest few events in the training data (``NextActionModel.add_transition_prior``),
with a weight that training picks on validation data after the networks are trained.

Shapes: B batch, W window, D hidden, V vocabulary (items + pad + unknown), K top-k,
P explained (occluded) positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple, cast

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from serving.triton_backend import N_GAP_BUCKETS, PAD_INDEX, UNKNOWN_INDEX
from stream.records import ACTIONS

__all__ = [
    "EXPLAIN_POSITIONS",
    "MIN_DROP",
    "PRIOR_HISTORY",
    "ItemNetwork",
    "KeyValue",
    "LowPass",
    "ModelConfig",
    "NextActionModel",
    "ServingModule",
    "key_mask",
]

# Keys and values of one attention layer, [N, H, columns, D / H] each.
KeyValue = tuple[torch.Tensor, torch.Tensor]

# Newest window events whose removal is measured by default. The stream cites at most 5 events;
# the occluded windows cost (P - 1)^2 trunk columns besides 2W, so on CPU 16 cost 2.3 times
# the inference of 8 (window 50, one thread: 1,001 against 2,267 windows/s).
EXPLAIN_POSITIONS = 8

# Noise floor (nats) subtracted from log-probability drops in attributions: about a 0.1%
# change of probability, far above float32 rounding and far below any real effect.
MIN_DROP = 1e-3

# Newest window events whose observed successors the transition prior adds, each counting
# PRIOR_DECAY times the next newer one. On Beauty (12-minute model) the newest three at
# decay 0.5 gave validation NDCG@10 0.0688 -> 0.0723, the newest alone 0.0715.
PRIOR_HISTORY = 3
PRIOR_DECAY = 0.5

# Each column's input also carries a learned share of the exponentially decayed mean of its
# own and earlier events' embeddings (BSARec's low-pass bias, made causal so that occluded
# windows can still reuse a shared prefix). Beauty test NDCG@10: 12-minute runs 0.0572 ->
# 0.0596 and 0.0601 (two seeds); the 45-minute benchmark 0.0583 -> 0.0602.
LOWPASS_DECAY = 0.5


class LowPass(NamedTuple):
    """Running sums of the low-pass branch after each column: decayed sums of the real events'
    embeddings [N, T, D] and of their count [N, T, 1]."""

    sums: torch.Tensor
    counts: torch.Tensor


def decayed_sums(embeds: torch.Tensor, real: torch.Tensor, carry: LowPass | None = None) -> LowPass:
    """Sums over s <= t of LOWPASS_DECAY^(t - s) * x_s for x in (embeds * real, real), per
    column t of [N, T, D] and [N, T, 1]; ``carry`` holds the sums just before column 0 (its
    last column is used). A [T, T] kernel rather than a scan: T is at most the window, and
    one matrix product exports to ONNX as is."""
    columns = torch.arange(embeds.shape[1], device=embeds.device)
    lag = columns.unsqueeze(1) - columns.unsqueeze(0)
    kernel = torch.where(lag >= 0, LOWPASS_DECAY ** lag.clamp(min=0).to(embeds.dtype), 0.0)
    sums, counts = kernel @ (embeds * real), kernel @ real
    if carry is not None:
        fade = (LOWPASS_DECAY ** (columns + 1).to(embeds.dtype)).unsqueeze(1)  # [T, 1]
        sums, counts = sums + fade * carry.sums[:, -1:], counts + fade * carry.counts[:, -1:]
    return LowPass(sums, counts)


def key_mask(items: torch.Tensor) -> torch.Tensor:
    """Columns that may be attended, bool [N, T] for left-padded windows [N, T].

    Pads are masked, except the newest column: a window emptied by occlusion would have no
    key at all. A real window always has an event there, so this changes nothing for it.
    """
    newest = torch.ones_like(items[:, -1:], dtype=torch.bool)
    return torch.cat([items[:, :-1] != PAD_INDEX, newest], dim=1)


@dataclass(frozen=True)
class ModelConfig:
    n_items: int = 0  # vocabulary size with padding and unknown; train() sets it from the vocab
    window: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    # Never score the window's own items (training loss and serving): for data where users
    # (almost) never return to an item, train() turns it on (see TrainConfig.exclude_seen).
    exclude_seen: bool = False
    # Most frequent successors kept per item for the transition prior (Beauty: 32 hold 90%
    # of all observed transitions).
    successors: int = 32
    # Networks trained apart whose scores are averaged (see TrainConfig.max_networks).
    networks: int = 1

    def to_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


class ItemNetwork(nn.Module):
    """One trained network: embeddings of the window's events, the causal trunk, and item
    scores as dot products with its own item embeddings (tied input/output)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items, config.hidden, padding_idx=PAD_INDEX)
        self.action_embedding = nn.Embedding(len(ACTIONS) + 1, config.hidden, padding_idx=0)
        self.gap_embedding = nn.Embedding(N_GAP_BUCKETS, config.hidden, padding_idx=0)
        for embedding in (self.item_embedding, self.action_embedding, self.gap_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
            with torch.no_grad():
                embedding.weight[0].zero_()
        trunk_config = GPT2Config(
            vocab_size=1,  # token embeddings unused: the trunk is driven through inputs_embeds
            n_positions=config.window,
            n_embd=config.hidden,
            n_layer=config.layers,
            n_head=config.heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            use_cache=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        self.trunk = GPT2Model(trunk_config)
        # Normalising the summed embeddings puts the item's identity at full scale in the residual
        # stream from the first step (the embeddings start at std 0.02): on Beauty, validation
        # NDCG@10 after 12 minutes rose from 0.051 to 0.060.
        self.embedding_norm = nn.LayerNorm(config.hidden)
        # Share of the low-pass branch per hidden unit; 0 (off) until training says otherwise.
        self.lowpass_mix = nn.Parameter(torch.zeros(config.hidden))

    def embed(
        self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor, carry: LowPass | None = None
    ) -> tuple[torch.Tensor, LowPass]:
        """Trunk input for the newest T columns of a window, int64 [N, T] each -> [N, T, D],
        and the low-pass sums after each column (``carry``: those before the first column).

        Positions count back from the newest column, so the newest is always at the last
        learned position, whatever the padding, the serving window or the columns given.
        """
        columns = items.shape[1]
        position_ids = torch.arange(self.config.window - columns, self.config.window, device=items.device)
        embeds = self.item_embedding(items) + self.action_embedding(actions) + self.gap_embedding(gaps)
        lowpass = decayed_sums(embeds, (items != PAD_INDEX).unsqueeze(-1).to(embeds.dtype), carry)
        embeds = embeds + self.lowpass_mix * (lowpass.sums / lowpass.counts.clamp(min=1e-6))
        return self.trunk.drop(self.embedding_norm(embeds + self.trunk.wpe(position_ids))), lowpass

    def layers(
        self,
        hidden: torch.Tensor,
        attendable: torch.Tensor,
        past: list[KeyValue] | None = None,
        newest_only: bool = False,
    ) -> tuple[torch.Tensor, list[KeyValue]]:
        """Causal self-attention blocks over [N, T, D] -> (pre-norm output [N, T, D], or
        [N, 1, D] for the newest column with ``newest_only``; keys and values of every layer
        over past and own columns).

        ``past`` holds per layer the keys/values [N, H, S, D/H] of S earlier columns that every
        own column sees; ``attendable`` (bool [N, S + T]) says which columns may be attended.
        GPT-2's own modules run here, one column order for training and serving: serving
        reuses a prefix's keys and values across occluded windows (see ServingModule), and
        needs only the newest column out of the last layer, whose other columns then cost
        just their keys and values.
        """
        rows, columns, _ = hidden.shape
        seen = attendable.shape[1]
        own = torch.arange(columns, device=hidden.device).unsqueeze(1) + (seen - columns)
        causal = torch.arange(seen, device=hidden.device).unsqueeze(0) <= own  # [T, S + T]
        allowed = causal & attendable[:, None, None, :]  # [N, 1, T, S + T]
        # A finite floor instead of -inf: a row with nothing to attend to (a pad column's
        # query) gets a harmless average instead of NaN; no real column ever sees it.
        bias = torch.zeros_like(allowed, dtype=hidden.dtype).masked_fill(
            ~allowed, torch.finfo(hidden.dtype).min
        )
        cache: list[KeyValue] = []
        blocks = cast(list[GPT2Block], self.trunk.h)
        for index, block in enumerate(blocks):
            attention = block.attn
            heads = attention.num_heads
            query, key, value = attention.c_attn(block.ln_1(hidden)).split(attention.split_size, dim=2)
            query, key, value = (
                t.view(rows, columns, heads, -1).transpose(1, 2) for t in (query, key, value)
            )
            if past is not None:
                key = torch.cat([past[index][0], key], dim=2)
                value = torch.cat([past[index][1], value], dim=2)
            cache.append((key, value))
            if newest_only and index == len(blocks) - 1:
                query, hidden, bias, columns = query[:, :, -1:], hidden[:, -1:], bias[:, :, -1:], 1
            attended = nn.functional.scaled_dot_product_attention(
                query,
                key,
                value,
                attn_mask=bias,
                dropout_p=attention.attn_dropout.p if self.training else 0.0,
                scale=attention.scaling,
            )
            attended = attended.transpose(1, 2).reshape(rows, columns, -1)
            hidden = hidden + attention.resid_dropout(attention.c_proj(attended))
            hidden = hidden + block.mlp(block.ln_2(hidden))
        return hidden, cache

    def newest_hidden(self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """int64 [B, T] each (left-padded) -> hidden state after the newest event [B, D]: what
        training fits and serving scores."""
        hidden, _ = self.layers(self.embed(items, actions, gaps)[0], key_mask(items), newest_only=True)
        return self.trunk.ln_f(hidden[:, -1])


class NextActionModel(nn.Module):
    """``config.networks`` item networks whose mean score, plus the transition prior, ranks
    the catalogue. Averaging logits is averaging log-probabilities up to a per-row constant,
    which the softmax removes: the served probabilities are the networks' normalised
    geometric mean, tilted by the prior."""

    excluded: torch.Tensor  # bool [V] buffer: pad and unknown
    successor_items: torch.Tensor  # int64 [V, S] buffer, pad where an item has fewer successors
    successor_scores: torch.Tensor  # float [V, S] buffer, log(1 + count); 0 on pad entries
    prior_weight: torch.Tensor  # float [] buffer

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.networks = nn.ModuleList(ItemNetwork(config) for _ in range(config.networks))
        # Padding and unknown are never recommended: their scores are masked out.
        excluded = torch.zeros(config.n_items, dtype=torch.bool)
        excluded[[PAD_INDEX, UNKNOWN_INDEX]] = True
        self.register_buffer("excluded", excluded, persistent=False)
        # Transition prior: each item's most frequent successors, their log(1 + count), and
        # the weight of the prior (0 while the network trains). Saved with the weights.
        self.register_buffer(
            "successor_items", torch.zeros(config.n_items, config.successors, dtype=torch.int64)
        )
        self.register_buffer("successor_scores", torch.zeros(config.n_items, config.successors))
        self.register_buffer("prior_weight", torch.zeros(()))

    @property
    def item_networks(self) -> list[ItemNetwork]:
        return cast(list[ItemNetwork], list(self.networks))

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
        embeddings = [network.item_embedding.weight for network in self.item_networks]
        if len(embeddings) == 1:
            logits = hiddens[0] @ embeddings[0].T
        else:
            # One product over the joined hidden units rather than a [..., V] matrix per network
            # to average: the [..., V] products dominate the cost of serving.
            joined = torch.cat(list(hiddens), dim=-1) / len(embeddings)
            logits = joined @ torch.cat(embeddings, dim=1).T
        return logits.masked_fill(self.excluded, float("-inf"))

    def exclude(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """logits [N, V] with the items of ``seen`` (indices [N, S], any padding) at -inf,
        when the model excludes seen items; unchanged otherwise."""
        if not self.config.exclude_seen:
            return logits
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter(1, seen, True)
        return logits.masked_fill(mask, float("-inf"))

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

    def add_transition_prior(self, logits: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """logits [N, V] plus the transition prior of newest-first items [N, H] (H <=
        PRIOR_HISTORY, pads allowed): weight * sum over h of PRIOR_DECAY^h * log(1 + times
        item v followed item h). Scattered into the logits: a dense [N, V] prior would cost
        an allocation and an addition per variant on the serving path."""
        decay = PRIOR_DECAY ** torch.arange(recent.shape[1], device=recent.device, dtype=torch.float32)
        values = self.successor_scores[recent] * (self.prior_weight * decay)[None, :, None]  # [N, H, S]
        return logits.scatter_add(1, self.successor_items[recent].flatten(1), values.flatten(1))

    def predict(self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """Inference: next-item logits after the newest event, [B, V]."""
        logits = self.item_logits(self.newest_hidden(items, actions, gaps))
        logits = self.add_transition_prior(logits, items[:, -PRIOR_HISTORY:].flip(1))
        return self.exclude(logits, items)


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
        self, items: torch.Tensor, actions: torch.Tensor, gap_buckets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, window = items.shape
        variants = self.explain_positions + 1
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
        logits = self.model.exclude(logits, seen)
        log_probs = torch.log_softmax(logits, dim=-1)  # [B*(P+1), V]
        log_probs = log_probs.reshape(batch, variants, -1)  # [B, P+1, V]
        base = log_probs[:, -1]  # [B, V]
        top_log_probs, top_indices = torch.topk(base, self.top_k, dim=-1)  # [B, K]
        index = top_indices.unsqueeze(1).expand(-1, variants - 1, -1)  # [B, P, K]
        occluded = torch.gather(log_probs[:, :-1], 2, index)  # [B, P, K]
        # Evidence is the drop above a noise floor. Subtracting the floor (not cutting at it)
        # keeps weights continuous, so rounding differences between runtimes stay small.
        drop = (top_log_probs.unsqueeze(1) - occluded - MIN_DROP).clamp(min=0)  # [B, P, K]
        # Padding never explains anything (its removal is a no-op up to rounding).
        explained = items[:, window - self.explain_positions :] != PAD_INDEX  # [B, P]
        drop = drop * explained.unsqueeze(-1).to(drop.dtype)
        total = drop.sum(dim=1, keepdim=True)  # [B, 1, K]
        weights = torch.where(total > 0, drop / total.clamp(min=1e-12), torch.zeros_like(drop))
        older = drop.new_zeros(batch, window - self.explain_positions, self.top_k)
        attributions = torch.cat([older, weights], dim=1).transpose(1, 2)  # [B, K, W]
        return top_indices, top_log_probs.exp(), attributions
