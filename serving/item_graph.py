"""An item table that trains smoothed over the items' neighbours in the training sequences.

Items next to each other in users' sequences (either order) are neighbours. While a network
trains, its tied item table ``E`` is used as ``(1 - s) E + s A E``, ``A`` averaging each
item's most frequent neighbours: a gradient that reaches an item also moves the items its
neighbours are averaged from, so rare items learn from their neighbours' data. It speeds
early training most (docs/2026-11-30-training-budget.md). The table the best epoch used is
written in as a plain table when training ends, so checkpoints, exports and serving see an
ordinary item table.

Shapes: V vocabulary (items + pad + unknown), D hidden.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from serving.baselines import top_per_row, transition_counts
from serving.data import UserSequence
from serving.evaluation import Catalogue
from serving.network import ItemNetwork

__all__ = ["GraphSmoothing", "neighbour_graph", "smooth_item_tables", "smoothing_of", "write_in_smoothing"]


def neighbour_graph(catalogue: Catalogue, train: Sequence[UserSequence], neighbours: int) -> torch.Tensor:
    """Sparse float [V, V]: row v averages item v's ``neighbours`` most frequent neighbours
    (the items right before or after it in the sequences, itself aside); a row without any
    (pad, unknown, an item alone in its sequences) is the item itself."""
    size = len(catalogue.counts)
    keys, counts = transition_counts(catalogue, train)
    rows, columns = np.divmod(keys, size)
    both = np.concatenate([keys, columns * size + rows])
    unique, inverse = np.unique(both, return_inverse=True)
    summed = np.bincount(inverse, weights=np.concatenate([counts, counts])).astype(np.int64)
    distinct = unique // size != unique % size
    items, top_counts = top_per_row(unique[distinct], summed[distinct], size, neighbours)
    present = top_counts > 0
    alone = ~present.any(axis=1)
    items[alone, 0], present[alone, 0] = np.arange(size)[alone], True
    row_index = np.repeat(np.arange(size), present.sum(axis=1))
    weights = (1.0 / present.sum(axis=1))[row_index]
    indices = torch.from_numpy(np.stack([row_index, items[present]]))
    graph = torch.sparse_coo_tensor(
        indices, torch.from_numpy(weights).float(), (size, size), check_invariants=True
    )
    return graph.coalesce()


class _SparseProduct(torch.autograd.Function):
    """``matrix @ table`` for a constant sparse CSR ``matrix``, its gradient through the
    transpose kept beside it: torch's own sparse product recomputes the transpose each
    backward pass, which costs several times the product on CPU."""

    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor
    ) -> torch.Tensor:
        ctx.transposed = transposed
        return matrix @ table

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None


class GraphSmoothing(nn.Module):
    """The parametrisation ``table -> (1 - share) table + share graph table``, as one sparse
    product."""

    def __init__(self, graph: torch.Tensor, share: float) -> None:
        super().__init__()
        size = graph.shape[0]
        diagonal = torch.arange(size).expand(2, size)
        identity = torch.sparse_coo_tensor(diagonal, torch.ones(size), graph.shape, check_invariants=True)
        mixed = ((1.0 - share) * identity + share * graph).coalesce()
        with warnings.catch_warnings():  # "CSR support is in beta": the product used here is not
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = mixed.to_sparse_csr()
            self.transposed = mixed.t().coalesce().to_sparse_csr()

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, _SparseProduct.apply(table, self.matrix, self.transposed))


def smooth_item_tables(networks: Sequence[ItemNetwork], graph: torch.Tensor, share: float) -> None:
    """Train each network's item table through :class:`GraphSmoothing`."""
    for network in networks:
        parametrize.register_parametrization(network.item_embedding, "weight", GraphSmoothing(graph, share))


def smoothing_of(network: ItemNetwork) -> GraphSmoothing | None:
    """The network's item-table smoothing, if it trains with one."""
    return next((m for m in network.item_embedding.modules() if isinstance(m, GraphSmoothing)), None)


def write_in_smoothing(networks: Sequence[ItemNetwork]) -> None:
    """Replace each smoothed item table by the table it is used as: a plain parameter."""
    for network in networks:
        if smoothing_of(network) is not None:
            parametrize.remove_parametrizations(network.item_embedding, "weight", leave_parametrized=True)
