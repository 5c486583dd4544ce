"""The item table smoothed over the sequences' neighbour graph: the graph, training through it,
and a trained model that keeps a plain table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contract import FIRST_ITEM_INDEX, PAD_INDEX
from serving.data import TrainingSamples, UserSequence, training_samples
from serving.evaluation import Catalogue, Split, evaluate, leave_one_out
from serving.item_graph import neighbour_graph, smoothing_of
from serving.model import ModelConfig, NextActionModel
from serving.train_config import TrainConfig
from serving.training_run import TrainingRun, model_scorer

pytestmark = pytest.mark.unit


def _sequence(user: str, items: str) -> UserSequence:
    names = tuple(items.split())
    count = len(names)
    return UserSequence(
        user, tuple(f"{user}-{n}" for n in range(count)), names, (1,) * count, tuple(range(count))
    )


def _dense_rows(catalogue: Catalogue, graph: torch.Tensor) -> dict[str, dict[str, float]]:
    """Each item's row of the graph as {neighbour: weight}."""
    dense = graph.to_dense()
    names = {index: item for index, item in enumerate(catalogue.vocab.items, start=FIRST_ITEM_INDEX)}
    return {
        names[row]: {names[int(c)]: round(float(dense[row, c]), 4) for c in dense[row].nonzero().flatten()}
        for row in names
    }


def test_each_item_averages_its_most_frequent_neighbours_in_either_order() -> None:
    train = [
        _sequence("u1", "a b c"),
        _sequence("u2", "b a d"),
        _sequence("u3", "c a a"),  # a repeated is not its own neighbour
        _sequence("u4", "a c"),
        _sequence("u5", "e"),  # alone in its sequence
    ]
    catalogue = Catalogue.of(train)
    graph = neighbour_graph(catalogue, train, neighbours=2)
    rows = _dense_rows(catalogue, graph)
    # a: b twice (a b, b a), c twice (c a, a c), d once; b: a twice, c once.
    assert rows["a"] == {"b": 0.5, "c": 0.5}
    assert rows["b"] == {"a": 0.5, "c": 0.5}
    assert rows["c"] == {"a": 0.5, "b": 0.5}
    assert rows["d"] == {"a": 1.0}
    assert rows["e"] == {"e": 1.0}
    dense = graph.to_dense()
    assert dense[PAD_INDEX].tolist() == [1.0] + [0.0] * (len(dense) - 1)
    torch.testing.assert_close(dense.sum(dim=1), torch.ones(len(dense)))


def _run(share: float) -> tuple[TrainingRun, TrainingSamples, Split]:
    """A run on 40 overlapping sequences."""
    lines = [" ".join(str((u * 5 + n) % 37) for n in range(8)) for u in range(40)]
    split = leave_one_out([_sequence(f"u{u}", line) for u, line in enumerate(lines)])
    catalogue = Catalogue.of(split.train)
    model = NextActionModel(ModelConfig(n_items=len(catalogue.vocab), window=8, hidden=16, heads=2))
    config = TrainConfig(epochs=3, batch_size=16, patience=100, threads=1, graph_share=share)
    graph = neighbour_graph(catalogue, split.train, config.graph_neighbours)
    run = TrainingRun(model, catalogue, config, None, graph)
    return run, training_samples(split.train, catalogue.vocab, 8), split


def test_training_uses_the_smoothed_table_and_keeps_the_best_one_as_a_plain_table() -> None:
    torch.manual_seed(0)
    run, samples, split = _run(share=0.6)
    network = run.model.item_networks[0]
    assert run.graph is not None and smoothing_of(network) is not None
    generator = torch.Generator().manual_seed(0)
    run.step(samples, split.validation, generator, 0.0)
    original = dict(network.named_parameters())["item_embedding.parametrizations.weight.original"]
    dense = run.graph.to_dense()
    expected = 0.4 * original + 0.6 * dense @ original
    torch.testing.assert_close(network.item_embedding.weight, expected)
    # The gradient through the stored transpose is the dense formula's.
    weights = torch.randn_like(expected)
    (got,) = torch.autograd.grad((network.item_embedding.weight * weights).sum(), original)
    (want,) = torch.autograd.grad((expected * weights).sum(), original)
    torch.testing.assert_close(got, want)

    model = run.fit(samples, split.validation, generator, "test", progress=False)
    assert smoothing_of(model.item_networks[0]) is None
    assert "networks.0.item_embedding.weight" in model.state_dict()
    # Written in: the table the best epoch scored with.
    rescored = evaluate(model_scorer(model, run.catalogue.vocab), split.validation, run.catalogue)
    assert rescored.ndcg[10] == pytest.approx(run.best.ndcg10)
    assert run.finish() is model  # finishing again is harmless


def test_without_a_share_the_table_is_never_smoothed() -> None:
    run, _, _ = _run(share=0.0)
    assert smoothing_of(run.model.item_networks[0]) is None


def test_every_network_of_a_trained_checkpoint_keeps_a_plain_table(tmp_path: Path) -> None:
    from serving.checkpoint import load_checkpoint
    from serving.train import train

    lines = [" ".join(str((u * 5 + n) % 53) for n in range(8)) for u in range(50)]
    sequences = [_sequence(f"u{u}", line) for u, line in enumerate(lines)]
    config = TrainConfig(
        epochs=2, max_networks=2, network_min_gain=-1.0, prior_weights=(0.0,), graph_share=0.5
    )
    train(sequences, tmp_path / "ckpt", train_config=config, progress=False)
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    assert checkpoint.model.config.networks == 2
    assert all(smoothing_of(network) is None for network in checkpoint.model.item_networks)


def test_a_share_outside_zero_to_one_is_refused(tmp_path: Path) -> None:
    from serving.train import train

    sequences = [_sequence(f"u{u}", "a b c d") for u in range(5)]
    with pytest.raises(ValueError, match="graph_share"):
        train(sequences, tmp_path / "ckpt", train_config=TrainConfig(graph_share=1.5), progress=False)
