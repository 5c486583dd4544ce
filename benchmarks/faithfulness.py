"""Faithfulness of the served explanations on a data set: deletion tests against baseline
attribution methods, the share of a prediction the explained events account for, and what
explaining more positions costs in serving time."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.model_quality import serving_cost
from contract import ACTIONS, FIRST_ITEM_INDEX
from serving.checkpoint import Checkpoint, load_checkpoint
from serving.data import UserSequence, encode_windows
from serving.faithfulness import DELETION_SIZES, METHODS, TOP_N, deletion_test, explained_share
from serving.serving_module import ServingModule
from stream.explain import ItemFacts, explain_batch
from stream.records import WindowEvent
from stream.wording import ItemTitles

__all__ = ["EXPLAIN_CHOICES", "faithfulness_report", "faithfulness_tables"]

# Explained positions whose share and serving cost are reported (the window is 50).
EXPLAIN_CHOICES = (8, 16, 32, 50)


def _sample(cases: list[UserSequence], n: int, seed: int) -> list[UserSequence]:
    picked = np.sort(np.random.default_rng(seed).permutation(len(cases))[:n])
    return [cases[i] for i in picked]


def example_explanations(
    checkpoint: Checkpoint, cases: list[UserSequence], titles: dict[str, str], items: int = 3
) -> list[list[str]]:
    """The sentences the stream would publish for the top ``items`` of each case, a minute
    after its newest event, with the data set's titles."""
    module = ServingModule(checkpoint.model, top_k=items).eval()
    window = checkpoint.model.config.window
    with torch.no_grad():
        served = module(*(torch.from_numpy(x) for x in encode_windows(cases, checkpoint.vocab, window)))
    windows = [
        tuple(
            WindowEvent(event_id, item, ACTIONS[action - 1], ts)
            for event_id, item, action, ts in zip(
                seq.event_ids, seq.items, seq.actions, seq.timestamps_ms, strict=True
            )
        )[-window:]
        for seq in cases
    ]
    names = [[checkpoint.vocab.items[int(i) - FIRST_ITEM_INDEX] for i in row] for row in served.top_indices]
    explanations = [
        explain_batch(
            [events],
            [row],
            [["model"] * len(row)],
            served.attributions[b : b + 1].numpy(),
            ItemFacts(served.signals[b : b + 1].numpy(), served.popularity[b : b + 1].numpy()),
            ItemTitles(titles),
            events[-1].ts_ms + 60_000,
        )[0]
        for b, (events, row) in enumerate(zip(windows, names, strict=True))
    ]
    return [[explanation["sentence"] for explanation in row] for row in explanations]


def faithfulness_report(
    checkpoint_dir: Path,
    test_inputs: list[UserSequence],
    titles: dict[str, str],
    max_cases: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Deletion outcomes, explained shares and serving costs of one trained checkpoint, on at
    most ``max_cases`` test inputs picked at random, and a few explanations as published."""
    checkpoint = load_checkpoint(checkpoint_dir)
    cases = _sample(test_inputs, max_cases, seed)
    with tqdm(total=len(cases), desc="deletion tests", unit="case") as bar:
        outcomes = deletion_test(checkpoint.model, checkpoint.vocab, cases, seed=seed, progress=bar.update)
    window = checkpoint.model.config.window
    positions = [p for p in EXPLAIN_CHOICES if p <= window]
    shares, costs = [], []
    with tempfile.TemporaryDirectory(prefix="faithfulness-") as tmp:
        for p in tqdm(positions, desc="explained positions", unit="setting"):
            shares.append(asdict(explained_share(checkpoint.model, checkpoint.vocab, cases[:500], p)))
            # A scratch copy of the checkpoint per setting keeps the exported versions apart.
            scratch = Path(tmp) / f"p{p}"
            scratch.symlink_to(checkpoint_dir.resolve(), target_is_directory=True)
            costs.append({"explain_positions": p, **serving_cost(scratch, test_inputs[:32], p)})
    return {
        "examples": example_explanations(checkpoint, cases[:3], titles),
        "cases": len(cases),
        "deletion": [asdict(o) for o in outcomes],
        "explained_share": shares,
        "serving_cost": costs,
    }


def faithfulness_tables(name: str, report: dict[str, Any]) -> str:
    """Markdown: one deletion table (rows: methods; columns: share out of the top 10 and mean
    log-probability drop per deletion size), then positions against share and cost."""
    by_key = {(o["method"], o["deleted"]): o for o in report["deletion"]}
    header = " | ".join(f"top {k}: out of top {TOP_N} / log-p drop" for k in DELETION_SIZES)
    lines = [
        f"**{name}**: top item of {report['cases']} test users, its k most-attributed events deleted",
        "",
        f"| method | {header} |",
        "|---|" + "---|" * len(DELETION_SIZES),
    ]
    for method in METHODS:
        cells = [
            f"{by_key[method, k]['left_top_n']:.3f} / {by_key[method, k]['log_prob_drop']:.3f}"
            for k in DELETION_SIZES
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| explained positions | events in reach | effect share (median) | batch 32 ms | windows/s |",
        "|---|---|---|---|---|",
    ]
    for share, cost in zip(report["explained_share"], report["serving_cost"], strict=True):
        lines.append(
            f"| {share['explain_positions']} | {share['events_in_reach']:.3f} | {share['effect_share']:.3f} "
            f"| {cost['latency_ms_batch_32']:.1f} | {cost['windows_per_s_batch_32']:.0f} |"
        )
    lines += ["", "Explanations as published (three test users, their top 3 items):", ""]
    lines += [f"- {sentence}" for row in report["examples"] for sentence in row]
    return "\n".join(lines)
