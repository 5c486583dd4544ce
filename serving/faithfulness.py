"""Deletion tests: do the events an explanation cites really drive the recommended item?

Per case the model's top item is explained by an attribution method, which weighs each event
of the window. Deleting the k events it weighs most, as if they never happened (the window
re-encoded without them, so an older event slides in and time gaps are recomputed), and
scoring again shows how much the item depended on them: how often it leaves the top 10 and
how far its log-probability falls. The candidate set stays the original window's, so a
deleted event's item cannot come back as a recommendation and push others down.

Methods: ``occlusion`` (the served attribution, computed inside the exported graph),
``attention`` (last layer, the newest column's query, mean over heads and networks: the
classic unfaithful baseline), ``gradient_x_input`` (gradient of the item's log-probability
times the event's item embedding, summed over the hidden units and networks) and ``random``.

Shapes: B cases, W window, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from contract import PAD_INDEX
from serving.data import UserSequence, encode_windows
from serving.model import NextActionModel
from serving.network import key_mask
from serving.serving_module import EXPLAIN_POSITIONS, ServingModule
from serving.vocab import ItemVocab

__all__ = [
    "DELETION_SIZES",
    "METHODS",
    "TOP_N",
    "DeletionOutcome",
    "ExplainedShare",
    "deletion_test",
    "explained_share",
]

METHODS = ("occlusion", "attention", "gradient_x_input", "random")
DELETION_SIZES = (1, 2, 3)
TOP_N = 10  # the list an item must stay in


@dataclass(frozen=True)
class DeletionOutcome:
    """One method and deletion size over all cases."""

    method: str
    deleted: int
    cases: int
    left_top_n: float  # share of cases whose item left the top TOP_N
    log_prob_drop: float  # mean fall of the item's log-probability (nats)


@dataclass(frozen=True)
class ExplainedShare:
    """How much of a prediction the explained (newest) positions can account for."""

    explain_positions: int
    events_in_reach: float  # mean share of a window's events that are explained individually
    effect_share: float  # median: log-prob drop deleting those events / deleting the whole window


@dataclass(frozen=True)
class _Encoded:
    items: torch.Tensor
    actions: torch.Tensor
    gaps: torch.Tensor


_Method = Callable[[NextActionModel, _Encoded, torch.Tensor, np.random.Generator], np.ndarray]


def _encode(sequences: Sequence[UserSequence], vocab: ItemVocab, window: int) -> _Encoded:
    return _Encoded(*(torch.from_numpy(x) for x in encode_windows(sequences, vocab, window)))


@torch.no_grad()
def _log_probs(model: NextActionModel, windows: _Encoded, seen: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model.predict(windows.items, windows.actions, windows.gaps, seen), dim=-1)


def _occlusion(serving: ServingModule) -> _Method:
    """The served attribution of each target: it must be the graph's top item."""

    def attribute(
        _model: NextActionModel, windows: _Encoded, targets: torch.Tensor, _rng: np.random.Generator
    ) -> np.ndarray:
        with torch.no_grad():
            served = serving(windows.items, windows.actions, windows.gaps)
        if not torch.equal(served.top_indices[:, 0], targets):
            raise RuntimeError("the serving graph's top item differs from the model's")
        return served.attributions[:, 0].numpy()

    return attribute


def _attention(
    model: NextActionModel, windows: _Encoded, _targets: torch.Tensor, _rng: np.random.Generator
) -> np.ndarray:
    """Last layer's attention from the newest column, read from the layer's own projections."""
    total = torch.zeros(windows.items.shape, dtype=torch.float32)
    mask = key_mask(windows.items)
    captured: list[torch.Tensor] = []  # the last layer's query/key/value projections
    for network in model.item_networks:
        attention = cast(list[GPT2Block], network.trunk.h)[-1].attn
        handle = attention.c_attn.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            with torch.no_grad():
                network.newest_hidden(windows.items, windows.actions, windows.gaps)
        finally:
            handle.remove()
        query, key, _ = captured[-1].split(attention.split_size, dim=2)
        rows, columns, _ = key.shape
        heads = attention.num_heads
        query = query[:, -1].view(rows, heads, 1, -1)
        key = key.view(rows, columns, heads, -1).transpose(1, 2)
        scores = (query @ key.transpose(-1, -2)).squeeze(2) * attention.scaling  # [B, H, W]
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        total += torch.softmax(scores, dim=-1).mean(dim=1)
    return (total / len(model.item_networks)).numpy()


def _gradient_x_input(
    model: NextActionModel, windows: _Encoded, targets: torch.Tensor, _rng: np.random.Generator
) -> np.ndarray:
    embedded: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        embedded.append(output)

    handles = [network.item_embedding.register_forward_hook(keep) for network in model.item_networks]
    try:
        with torch.enable_grad():
            logits = model.predict(windows.items, windows.actions, windows.gaps)
            chosen = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])
            chosen.sum().backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    total = sum(
        (x * x.grad).sum(dim=-1) for x in embedded if x.grad is not None
    )  # item embedding feeds the trunk once per network
    return torch.as_tensor(total).detach().numpy()


def _random(
    _model: NextActionModel, windows: _Encoded, _targets: torch.Tensor, rng: np.random.Generator
) -> np.ndarray:
    return rng.random(windows.items.shape)


def _method_table(model: NextActionModel) -> dict[str, _Method]:
    """The attribution methods; the serving graph is built once per test, not per batch."""
    explain_positions = min(EXPLAIN_POSITIONS, model.config.window)
    return {
        "occlusion": _occlusion(ServingModule(model, top_k=1, explain_positions=explain_positions).eval()),
        "attention": _attention,
        "gradient_x_input": _gradient_x_input,
        "random": _random,
    }


def _strongest_columns(weights: np.ndarray, real: np.ndarray, k: int) -> np.ndarray:
    """int [B, k]: the k real columns of highest weight, newer first among equals."""
    weights = np.where(real, weights, -np.inf)
    width = weights.shape[1]
    return width - 1 - np.argsort(-weights[:, ::-1], axis=1, kind="stable")[:, :k]


def _delete_columns(
    sequences: Sequence[UserSequence], columns: Sequence[np.ndarray] | np.ndarray, window: int
) -> list[UserSequence]:
    """Each sequence without the events at the given window columns (window = newest W)."""
    remaining = []
    for seq, row in zip(sequences, columns, strict=True):
        deleted = {len(seq) - window + int(c) for c in row}
        remaining.append(seq.keeping(i for i in range(len(seq)) if i not in deleted))
    return remaining


def _batches(cases: Sequence[UserSequence], batch_size: int) -> Iterator[Sequence[UserSequence]]:
    for start in range(0, len(cases), batch_size):
        yield cases[start : start + batch_size]


def deletion_test(
    model: NextActionModel,
    vocab: ItemVocab,
    cases: Sequence[UserSequence],
    methods: Sequence[str] = METHODS,
    sizes: Sequence[int] = DELETION_SIZES,
    batch_size: int = 128,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[DeletionOutcome]:
    """Deletion outcomes per method and size, on cases with more events than the largest size
    (so some history always remains). ``progress`` is called with each batch's case count."""
    model.eval()
    window = model.config.window
    eligible = [seq for seq in cases if len(seq) > max(sizes)]
    rng = np.random.default_rng(seed)
    table = _method_table(model)
    left = {(m, k): 0 for m in methods for k in sizes}
    drops = {(m, k): 0.0 for m in methods for k in sizes}
    for batch in _batches(eligible, batch_size):
        original = _encode(batch, vocab, window)
        base = _log_probs(model, original, original.items)
        targets = base.argmax(dim=1)
        base_target = base.gather(1, targets[:, None]).squeeze(1)
        real = original.items.numpy() != PAD_INDEX
        for method in methods:
            weights = table[method](model, original, targets, rng)
            for k in sizes:
                deleted = _encode(
                    _delete_columns(batch, _strongest_columns(weights, real, k), window), vocab, window
                )
                after = _log_probs(model, deleted, original.items)
                after_target = after.gather(1, targets[:, None])
                rank = (after > after_target).sum(dim=1)
                left[method, k] += int((rank >= TOP_N).sum())
                drops[method, k] += float((base_target - after_target.squeeze(1)).sum())
        if progress is not None:
            progress(len(batch))
    n = max(len(eligible), 1)
    return [
        DeletionOutcome(m, k, len(eligible), left[m, k] / n, drops[m, k] / n) for m in methods for k in sizes
    ]


def explained_share(
    model: NextActionModel,
    vocab: ItemVocab,
    cases: Sequence[UserSequence],
    explain_positions: int = EXPLAIN_POSITIONS,
    batch_size: int = 128,
) -> ExplainedShare:
    """What deleting the explained positions together does to the top item, against deleting
    the whole history (the model's answer to no history at all)."""
    model.eval()
    window = model.config.window
    in_reach: list[float] = []
    shares: list[float] = []
    for batch in _batches(cases, batch_size):
        original = _encode(batch, vocab, window)
        base = _log_probs(model, original, original.items)
        targets = base.argmax(dim=1, keepdim=True)
        real = original.items.numpy() != PAD_INDEX
        counts = real.sum(axis=1)
        newest = np.broadcast_to(
            np.arange(window - explain_positions, window), (len(batch), explain_positions)
        )
        explained = [row[real[b, row]] for b, row in enumerate(newest)]
        drop = {}
        for name, remaining in (
            ("explained", _delete_columns(batch, explained, window)),
            ("all", [seq.head(0) for seq in batch]),
        ):
            after = _log_probs(model, _encode(remaining, vocab, window), original.items)
            drop[name] = (base.gather(1, targets) - after.gather(1, targets)).squeeze(1).numpy()
        in_reach.extend(np.minimum(counts, explain_positions) / counts)
        moved = drop["all"] > 1e-6
        shares.extend(np.clip(drop["explained"][moved] / drop["all"][moved], 0.0, None))
    return ExplainedShare(
        explain_positions,
        float(np.mean(in_reach)),
        float(np.median(shares)) if shares else 0.0,
    )
