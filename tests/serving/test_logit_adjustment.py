"""The logit-adjusted loss: trained on logits + tau * log popularity, the served raw logits
stop favouring an item for its popularity alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit


def popular_item_margin(tmp_path: Path, logit_adjustment: float) -> float:
    """Mean raw-logit lead of the most popular item over the others, trained on data where the
    next item never depends on the window: only popularity says anything."""
    from serving.datasets import load_dataset
    from serving.train import TrainConfig, train
    from serving.training_run import model_scorer

    rng = np.random.default_rng(0)
    shares = np.array([0.5] + [0.5 / 19] * 19)  # item 0 half the time, 19 others share the rest
    lines = "".join(f"u{u} {' '.join(map(str, rng.choice(20, 8, p=shares)))}\n" for u in range(150))
    (tmp_path / "lines.txt").write_text(lines)
    sequences = load_dataset(tmp_path / "lines.txt", "user-lines").sequences
    config = TrainConfig(
        epochs=8,
        prior_weights=(0.0,),
        max_networks=1,
        threads=1,
        patience=100,
        logit_adjustment=logit_adjustment,
        # Next items here are drawn regardless of the window, so every item neighbours every
        # other: the graph would only blur the popular item's row into the rest and hide the
        # lead this test measures the loss by.
        graph_share=0.0,
    )
    checkpoint = train(sequences, tmp_path / f"ckpt-{logit_adjustment}", train_config=config, progress=False)
    vocab = checkpoint.vocab
    popular = vocab.index("0")
    others = [vocab.index(str(i)) for i in range(1, 20) if vocab.index(str(i)) != popular]
    logits = model_scorer(checkpoint.model, vocab)(sequences[:20])  # the served raw logits
    return float(np.mean(logits[:, popular] - logits[:, others].mean(axis=1)))


def test_the_logit_adjusted_loss_takes_popularity_out_of_the_served_logits(tmp_path: Path) -> None:
    plain = popular_item_margin(tmp_path, 0.0)
    adjusted = popular_item_margin(tmp_path, 1.0)
    # Popularity ratio 0.5 / (0.5 / 19): a log lead of about 3 that plain training learns and
    # the adjusted loss leaves to the offset.
    assert plain > 1.0
    assert abs(adjusted) < plain / 4
