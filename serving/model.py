"""Next-item Transformer over a user's event window, and the module exported for serving.

A ``transformers`` GPT-2 trunk (causal self-attention) runs on our own input embeddings:
item + action + time-gap bucket. One trunk serves training (scores at every position,
SASRec-style) and prediction (scores at the last position). Item scores are dot products
with the item embedding matrix (tied input/output embeddings).

Shapes: B batch, W window, D hidden, V vocabulary (items + pad + unknown), K top-k,
P explained (occluded) positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from serving.triton_backend import N_GAP_BUCKETS, PAD_INDEX, UNKNOWN_INDEX
from stream.records import ACTIONS

__all__ = [
    "EXPLAIN_POSITIONS",
    "MIN_DROP",
    "ModelConfig",
    "NextActionModel",
    "ServingModule",
    "occlusion_index",
]

# Newest window events whose removal is measured by default. Each costs one more trunk pass per
# window and the stream cites at most 5 events; on CPU, 16 cost twice the inference of 8.
EXPLAIN_POSITIONS = 8

# Noise floor (nats) subtracted from log-probability drops in attributions: about a 0.1%
# change of probability, far above float32 rounding and far below any real effect.
MIN_DROP = 1e-3


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
    attn_implementation: str = "sdpa"  # exports with the dynamo ONNX exporter

    def to_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


class NextActionModel(nn.Module):
    excluded: torch.Tensor  # bool [V] buffer: pad and unknown

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
        trunk_config._attn_implementation = config.attn_implementation
        self.trunk = GPT2Model(trunk_config)
        # Padding and unknown are never recommended: their scores are masked out.
        excluded = torch.zeros(config.n_items, dtype=torch.bool)
        excluded[[PAD_INDEX, UNKNOWN_INDEX]] = True
        self.register_buffer("excluded", excluded, persistent=False)

    def encode(self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """int64 [B, W] each (left-padded) -> hidden states [B, W, D]."""
        window = items.shape[1]
        embeds = self.item_embedding(items) + self.action_embedding(actions) + self.gap_embedding(gaps)
        # Positions count back from the newest event, so the newest is always at the last
        # learned position, whatever the padding or the serving window length.
        position_ids = torch.arange(self.config.window - window, self.config.window, device=items.device)
        # Pads are masked, except the newest slot: a window emptied by occlusion would have
        # no key at all, and fully masked attention rows differ between torch and onnxruntime.
        # A real window always has an event there, so this changes nothing for it.
        newest = torch.ones_like(items[:, -1:], dtype=torch.bool)
        attention_mask = torch.cat([items[:, :-1] != PAD_INDEX, newest], dim=1)  # [B, W]
        output = self.trunk(
            inputs_embeds=embeds,
            attention_mask=attention_mask.long(),
            position_ids=position_ids.unsqueeze(0),
        )
        return output.last_hidden_state

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., V] scores against every item; pad and unknown at -inf."""
        logits = hidden @ self.item_embedding.weight.T
        return logits.masked_fill(self.excluded, float("-inf"))

    def exclude(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """logits [N, V] with the items of ``seen`` (indices [N, S], any padding) at -inf,
        when the model excludes seen items; unchanged otherwise."""
        if not self.config.exclude_seen:
            return logits
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter(1, seen, True)
        return logits.masked_fill(mask, float("-inf"))

    def forward(self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """Training: next-item logits at every position, [B, W, V] (seen items not excluded)."""
        return self.item_logits(self.encode(items, actions, gaps))

    def predict(self, items: torch.Tensor, actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """Inference: next-item logits after the newest event, [B, V]."""
        return self.exclude(self.item_logits(self.encode(items, actions, gaps)[:, -1]), items)


def occlusion_index(window: int, explain_positions: int) -> torch.Tensor:
    """Gather index [P + 1, W] into a window with a pad column prepended ([B, 1 + W]).

    Row p < P removes window position ``W - P + p`` (older events shift right by one, a pad
    enters on the left); the last row is the unchanged window.
    """
    rows = []
    for position in range(window - explain_positions, window):
        columns = torch.arange(window)
        rows.append(torch.where(columns > position, columns + 1, columns))
    rows.append(torch.arange(window) + 1)
    return torch.stack(rows)


class ServingModule(nn.Module):
    """Top-k items with probabilities and leave-one-event-out attributions, all in one graph.

    The attribution of window event j to item i is the drop in log p(i) when j is removed,
    less ``MIN_DROP``, clamped at 0 and normalised over the window (all zero when no removal
    lowers p(i) by more than ``MIN_DROP``).
    Only the newest ``explain_positions`` events are occluded; older ones get 0.
    """

    gather: torch.Tensor  # int64 [P + 1, W] buffer, see occlusion_index

    def __init__(
        self,
        model: NextActionModel,
        top_k: int = 20,
        explain_positions: int = EXPLAIN_POSITIONS,
        window: int | None = None,
    ) -> None:
        """``window`` may be shorter than the trained one (the newest events are kept)."""
        super().__init__()
        window = window or model.config.window
        if not 0 < window <= model.config.window:
            raise ValueError(f"window must lie in 1..{model.config.window}")
        if not 0 < explain_positions <= window:
            raise ValueError(f"explain_positions must lie in 1..{window}")
        if not 0 < top_k <= model.config.n_items - 2:
            raise ValueError("top_k must be at least 1 and at most the number of known items")
        self.model = model
        self.top_k = top_k
        self.explain_positions = explain_positions
        self.register_buffer("gather", occlusion_index(window, explain_positions), persistent=False)

    def _occlude(self, x: torch.Tensor) -> torch.Tensor:
        """[B, W] -> [B * (P + 1), W]: the P occluded windows then the original, per row."""
        batch = x.shape[0]
        padded = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)  # [B, 1 + W]
        rows = padded[:, self.gather]  # [B, P + 1, W]
        return rows.reshape(batch * (self.explain_positions + 1), -1)

    def forward(
        self, items: torch.Tensor, actions: torch.Tensor, gap_buckets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, window = items.shape
        variants = self.explain_positions + 1
        # One batched trunk pass over all occluded windows and the original ones, so base
        # and occluded scores come from the same arithmetic.
        hidden = self.model.encode(self._occlude(items), self._occlude(actions), self._occlude(gap_buckets))
        # Every variant keeps the whole window's candidate set: a removed event must not bring
        # its own item back and dilute the others' probabilities.
        seen = items.unsqueeze(1).expand(-1, variants, -1).reshape(batch * variants, window)
        logits = self.model.exclude(self.model.item_logits(hidden[:, -1]), seen)
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
