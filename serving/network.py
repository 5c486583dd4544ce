"""One next-item network: embeddings of a window's events, a causal GPT-2 trunk, item scores.

A ``transformers`` GPT-2 trunk (causal self-attention) runs on our own input embeddings:
item + action + time-gap bucket, plus a causal low-pass branch; our loop drives its blocks,
so serving can hand one pass's keys and values to the next (``ItemNetwork.layers``).

Shapes: N rows, T columns (the newest of a window of W), D hidden, H heads.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from contract import ACTIONS, N_GAP_BUCKETS, PAD_INDEX
from serving.model_config import ModelConfig
from serving.next_event import NextEventHeads

__all__ = ["LOWPASS_DECAY", "ItemNetwork", "KeyValue", "LowPass", "decayed_sums", "key_mask"]

# Keys and values of one attention layer, [N, H, columns, D / H] each.
KeyValue = tuple[torch.Tensor, torch.Tensor]

# Each column's input also carries a learned share of the exponentially decayed mean of its
# own and earlier events' embeddings: BSARec's low-pass bias, made causal so that occluded
# windows can still reuse a shared prefix (measured effect: docs/2026-11-model-experiments.md).
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


class ItemNetwork(nn.Module):
    """One trained network: embeddings of the window's events, the causal trunk, item scores
    as dot products with its own item embeddings (tied input/output), and the next event's
    action and gap heads on the same state."""

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
        # stream from the first step (the embeddings start at std 0.02), which sparse data needs.
        self.embedding_norm = nn.LayerNorm(config.hidden)
        # Share of the low-pass branch per hidden unit; 0 (off) until training says otherwise.
        self.lowpass_mix = nn.Parameter(torch.zeros(config.hidden))
        self.next_event = NextEventHeads(config.hidden)

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
