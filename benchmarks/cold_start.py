"""Cold-start benchmark on MovieLens 100K: can text-predicted rows make unseen items recommendable?

The newest share of items (by first rating) is held out of training entirely; the model is
trained on the rest with a fixed small budget, then the held-out items are added from their
titles and genres (:mod:`serving.cold_start`). Ranked: every item, warm and held out, the
user's own items excluded (``serving.evaluation``). Cases, from the full sequences:

  cold, last event   each user's last event whose item is held out (the leave-one-out cases)
  cold, every event  every event of a held-out item, input the user's events before it: the
                     last-event cases are few; later warm events of these users were trained
                     on, which no scorer here can use to find an item it never saw
  warm, last event   each user's last event whose item is warm: adding rows must not hurt it
  all, last event    both together, the mix a live system sees; "held-out share" is the share
                     of all top-10 slots that held-out items fill (they are 3.8% of the targets)

The row scale is also chosen without the test cases: on the trained model, the newest share
of its own items play the new items (their rows replaced by text-predicted ones, the mapping
fitted on the other items), and each scale is scored on the training split's validation
events (:func:`validation_row_scale`).

Usage:
    python -m benchmarks.cold_start --data PATH/u.data [--time-budget MIN] --out DIR
        [--checkpoint DIR (reused when it holds one)]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.cold_start_data import ColdSplit, cold_split, every_cold_event, movielens_texts
from benchmarks.cold_start_scorers import Scorers
from contract import FIRST_ITEM_INDEX
from serving.checkpoint import Checkpoint, load_checkpoint
from serving.cold_start import TextRows, add_item_rows, item_rows
from serving.data import UserSequence
from serving.datasets import load_dataset
from serving.evaluation import Cases, Catalogue, ScoreFn, evaluate, leave_one_out
from serving.item_text import TextEncoder
from serving.model import ModelConfig
from serving.text_mapping import TextMapping
from serving.train import TrainConfig, train
from serving.training_run import model_scorer
from serving.vocab import ItemVocab

COLUMNS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")
SHARE = "held-out share@10"
# Scales of the predicted rows tried (serving.cold_start.ROW_SCALE is the one add-items uses):
# ridge shrinks predictions towards the mean row, which may leave new items too weak to rank.
ROW_SCALES = (1.0, 1.5, 2.0, 3.0)
# Accuracy on the validation mix always prefers new items unseen (x1: they never rank), so the
# choice is the most exposure for new items within the accuracy budget exploration has too.
MAX_VALIDATION_LOSS = 0.05


def _trained(split: ColdSplit, checkpoint_dir: Path, budget_s: float) -> Checkpoint:
    if (checkpoint_dir / "hparams.json").is_file():
        print(f"[cold-start] reusing the checkpoint in {checkpoint_dir}", flush=True)
        return load_checkpoint(checkpoint_dir)
    print(f"[cold-start] training on the warm items for about {budget_s:.0f} s", flush=True)
    config = TrainConfig(time_budget_s=budget_s, max_networks=1, threads=1, seed=0)
    return train(split.train, checkpoint_dir, ModelConfig(dropout=0.5), config)


def held_out_share(score: ScoreFn, cases: Cases, vocab: ItemVocab, held_out: np.ndarray) -> float:
    """Share of the top-10 slots (the user's own items excluded) that held-out items (bool [V])
    fill."""
    filled = 0
    for start in range(0, len(cases), 256):
        inputs = cases.inputs[start : start + 256]
        scores = np.array(score(inputs), dtype=np.float64)
        scores[:, :FIRST_ITEM_INDEX] = -np.inf
        for row, seq in enumerate(inputs):
            scores[row, vocab.indices(seq.items)] = -np.inf
        filled += int(held_out[np.argpartition(-scores, 9, axis=1)[:, :10]].sum())
    return filled / (10 * len(cases))


def _as_new(checkpoint: Checkpoint, items: tuple[str, ...], rows: np.ndarray) -> Checkpoint:
    """A copy of the checkpoint in which ``items`` look as added items do: ``rows``
    [N, networks * D] in every network, no transition-prior successors of their own or as
    anyone's successor, the least popularity."""
    model = copy.deepcopy(checkpoint.model)
    indices = torch.from_numpy(checkpoint.vocab.indices(list(items)))
    hidden = model.config.hidden
    with torch.no_grad():
        for n, network in enumerate(model.item_networks):
            network.item_embedding.weight[indices] = torch.from_numpy(rows[:, n * hidden : (n + 1) * hidden])
        model.successor_scores[indices] = 0.0
        model.successor_scores[torch.isin(model.successor_items, indices)] = 0.0
        model.log_popularity[indices] = model.log_popularity.min()
    return Checkpoint(model, checkpoint.vocab, checkpoint.metrics)


def validation_row_scale(
    checkpoint: Checkpoint, train_sequences: list[UserSequence], text: dict[str, np.ndarray], share: float
) -> dict[str, Any]:
    """Validation NDCG@10 per row scale when the newest ``share`` of the model's own items
    (by first rating in its training part) look as added items do; ``chosen``: the largest
    scale within ``MAX_VALIDATION_LOSS`` of the best."""
    split = leave_one_out(train_sequences)
    pseudo_new = cold_split(split.train, share).cold_items
    known = [item for item in checkpoint.vocab.items if item not in pseudo_new]
    replaced = tuple(item for item in checkpoint.vocab.items if item in pseudo_new)
    rows = item_rows(checkpoint.model)
    mapping = TextMapping.fit(np.stack([text[item] for item in known]), rows[checkpoint.vocab.indices(known)])
    predicted = mapping.predict(np.stack([text[item] for item in replaced]))
    validation = split.validation
    counts = Counter(item for seq in split.train for item in seq.items)
    catalogue = _catalogue(checkpoint.vocab, counts)
    ndcg = {}
    for scale in ROW_SCALES:
        trial = _as_new(checkpoint, replaced, predicted * scale)
        ndcg[scale] = evaluate(model_scorer(trial.model, trial.vocab), validation, catalogue).ndcg[10]
    return {
        "pseudo_new_items": len(replaced),
        "pseudo_new_targets": sum(target in pseudo_new for target in validation.targets),
        "validation_ndcg@10": {str(scale): value for scale, value in ndcg.items()},
        "chosen": max(s for s in ROW_SCALES if ndcg[s] >= (1 - MAX_VALIDATION_LOSS) * max(ndcg.values())),
    }


def _catalogue(vocab: ItemVocab, counts: Counter[str]) -> Catalogue:
    return Catalogue(vocab, np.array([0, 0, *(counts[item] for item in vocab.items)], dtype=np.int64))


def run(data: Path, checkpoint_dir: Path, budget_s: float, cold_share: float) -> dict[str, Any]:
    torch.set_num_threads(1)
    started = time.monotonic()
    sequences = load_dataset(data, "movielens").sequences
    split = cold_split(sequences, cold_share)
    checkpoint = _trained(split, checkpoint_dir, budget_s)
    trained_s = time.monotonic() - started

    texts = movielens_texts(data)
    cold = tuple(sorted(split.cold_items, key=int))
    warm = checkpoint.vocab.items
    print(f"[cold-start] encoding {len(texts)} item texts", flush=True)
    encoded_at = time.monotonic()
    encoder = TextEncoder()
    vectors = encoder.encode([texts[item] for item in (*warm, *cold)])
    encode_s = time.monotonic() - encoded_at
    warm_text, cold_text = vectors[: len(warm)], vectors[len(warm) :]
    mapping = TextMapping.fit(warm_text, item_rows(checkpoint.model)[checkpoint.vocab.indices(warm)])
    print(f"[cold-start] mapping: penalty {mapping.penalty}, explained {mapping.explained:.3f}", flush=True)
    predicted = mapping.predict(cold_text)
    print("[cold-start] choosing the row scale on validation events", flush=True)
    text_of = dict(zip(warm, warm_text, strict=True))
    chosen = validation_row_scale(checkpoint, split.train, text_of, cold_share)
    print(f"[cold-start] validation chooses x{chosen['chosen']}", flush=True)
    extended = {scale: add_item_rows(checkpoint, TextRows(cold, predicted * scale)) for scale in ROW_SCALES}
    vocab = extended[1.0].vocab
    train_counts = Counter(item for seq in split.train for item in seq.items)
    all_counts = Counter(item for seq in sequences for item in seq.items)
    catalogue = _catalogue(vocab, train_counts)
    scorers = Scorers(checkpoint, extended, vocab, all_counts, split.cold_items)
    case_sets: dict[str, Cases] = {
        "cold, last event": split.cold_test,
        "cold, every event": every_cold_event(sequences, split.cold_items),
        "warm, last event": split.warm_test,
        "all, last event": Cases(
            split.cold_test.inputs + split.warm_test.inputs, split.cold_test.targets + split.warm_test.targets
        ),
    }
    held_out = np.array([False, False, *(item in split.cold_items for item in vocab.items)])
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, cases in case_sets.items():
        print(f"[cold-start] evaluating {name} ({len(cases)} cases)", flush=True)
        methods = scorers.for_cold() if name.startswith("cold") else scorers.for_known_targets()
        results[name] = {
            method: {
                **evaluate(fn, cases, catalogue).to_dict(),
                SHARE: held_out_share(fn, cases, vocab, held_out),
            }
            for method, fn in methods.items()
        }
    metrics = checkpoint.metrics
    return {
        "data": str(data),
        "cold_share": cold_share,
        "warm_items": len(warm),
        "cold_items": len(cold),
        "cold_interactions": sum(all_counts[item] for item in cold),
        "training": {
            "budget_s": budget_s,
            "train_seconds": metrics["train_seconds"],
            "epochs_run": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"],
            "threads": 1,
            "networks": metrics["networks"],
            "prior_weight": metrics["prior_weight"],
            "own_test": metrics["results"]["model"]["test"],
        },
        "mapping": {"penalty": mapping.penalty, "explained": mapping.explained},
        "row_scale_on_validation": chosen,
        "row_norms": {
            "warm_median": float(np.median(np.linalg.norm(item_rows(checkpoint.model)[2:], axis=1))),
            "cold_predicted_median": float(np.median(np.linalg.norm(predicted, axis=1))),
        },
        "seconds": {
            "training_or_loading": round(trained_s, 1),
            "encoding_all_texts": round(encode_s, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    training = report["training"]
    lines = [
        f"# Cold-start items on {Path(report['data']).parent.name}",
        "",
        f"{report['cold_items']} held-out items (newest {report['cold_share']:.0%} by first rating, "
        f"{report['cold_interactions']} interactions), {report['warm_items']} warm items. Model: 1 network, "
        f"1 thread, {training['train_seconds']:.0f} s training ({training['epochs_run']} epochs, best "
        f"{training['best_epoch']}), prior weight {training['prior_weight']}. Text mapping: ridge, "
        f"penalty {report['mapping']['penalty']}, cross-validated explained variance "
        f"{report['mapping']['explained']:.3f}. All items ranked, the user's own items excluded.",
    ]
    if "row_scale_on_validation" in report:
        chosen = report["row_scale_on_validation"]
        scores = ", ".join(f"x{k} {v:.4f}" for k, v in chosen["validation_ndcg@10"].items())
        lines += [
            "",
            f"Row scale chosen on validation events: {chosen['pseudo_new_items']} of the model's newest "
            f"items made new ({chosen['pseudo_new_targets']} validation targets); NDCG@10 {scores}; "
            f"the largest within {MAX_VALIDATION_LOSS:.0%} of the best: **x{chosen['chosen']}**.",
        ]
    for name, methods in report["results"].items():
        users = next(iter(methods.values()))["users"]
        columns = (*COLUMNS, SHARE)
        lines += ["", f"## {name} ({users:.0f} cases)", "", "| method | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for method, result in methods.items():
            lines.append(f"| {method} | " + " | ".join(f"{result[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="MovieLens u.data, u.item beside it")
    parser.add_argument("--time-budget", type=float, default=8.0, help="training minutes")
    parser.add_argument("--cold-share", type=float, default=0.1)
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained here, or reused")
    parser.add_argument("--out", type=Path, required=True, help="cold_start.json and cold_start.md here")
    args = parser.parse_args(argv)
    report = run(args.data, args.checkpoint, args.time_budget * 60.0, args.cold_share)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "cold_start.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
