"""Diversity re-ranking, the exploration slot and popularity correction against accuracy, on
real data: the trade-off curves that set :class:`stream.rerank.RerankPolicy`'s defaults.

Per data set and trained checkpoint, one scoring pass over the leave-one-out test cases (the
user's items excluded as in :mod:`serving.evaluation`) keeps the best ``max(KS)`` candidates
and their probabilities; :func:`stream.rerank.rerank` then picks the 10 published items under
each setting, with cosine similarity of the model's item embeddings (the networks' side by
side: the space its scores are dot products in) and the evaluation's head as the long-tail
cut. The same pass gives the popularity-adjusted lists of :mod:`benchmarks.debias`.

Settings pair the re-ranking with the popularity correction the graph applies first
(``SERVED_TAUS``: none, and the stream's default), as the stream does both.

A default must raise both the long-tail share and intra-list diversity by ``MIN_GAIN``
(relative) for at most ``MAX_NDCG_LOSS`` NDCG@10 on every data set with the same setting.

Usage:
    python -m benchmarks.exploration OUT_DIR movielens:PATH/u.data=CHECKPOINT \
        user-lines:PATH/Beauty.txt=CHECKPOINT [--cases N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.debias import (
    TAU_COLUMNS,
    TAUS,
    CaseScores,
    item_embeddings,
    markdown_table,
    plot_taus,
    score_tests,
    tau_rows,
)
from benchmarks.model_quality import DataSpec
from serving.checkpoint import load_checkpoint
from serving.datasets import load_dataset
from serving.evaluation import LIST_LENGTH, Catalogue, leave_one_out
from serving.figure import saved_figure
from serving.list_metrics import list_ranks, list_report, ndcg_change
from stream.rerank import EXPLORATION, Relevance, RerankPolicy, rerank

KS = (20, 50)
DIVERSITIES = (0.0, 0.1, 0.2, 0.3, 0.5)
EXPLORATION_SLOTS = (0, 1, 2)
RELEVANCES: tuple[Relevance, ...] = ("ratio", "rank")
# Popularity corrections (NEXTACTION_POPULARITY_ADJUSTMENT) the candidates are served under,
# combined with rank relevance only (ratio lost to it).
SERVED_TAUS = (0.0, 0.25, 0.5)
BATCH = 256  # windows per re-ranking call, as the stream batches them
MIN_GAIN = 0.2
MAX_NDCG_LOSS = 0.05
BEYOND = ("ild@10", "novelty@10", "long_tail@10", "coverage@10")
GRID_COLUMNS = (
    "ndcg@10",
    "ndcg@10_change",
    "ndcg@10_change_se",
    "hr@10",
    *BEYOND,
    "ndcg@10_ips",
    "explored_share",
)


@dataclass(frozen=True)
class Setting:
    k: int
    relevance: Relevance
    diversity: float
    exploration_slots: int
    tau: float = 0.0

    def policy(self) -> RerankPolicy:
        return RerankPolicy(self.diversity, self.exploration_slots, self.relevance)

    @property
    def family(self) -> str:
        corrected = f", tau {self.tau:g}" if self.tau else ""
        return f"{self.relevance}, {self.exploration_slots} exploration slot(s){corrected}"


SETTING_FIELDS = ("k", "relevance", "diversity", "exploration_slots", "tau")
BASELINE = Setting(KS[0], "ratio", 0.0, 0)
SETTINGS = [
    Setting(k, relevance, diversity, slots, tau)
    for tau in SERVED_TAUS
    for k in KS
    for relevance in RELEVANCES
    for slots in EXPLORATION_SLOTS
    for diversity in DIVERSITIES
    if tau == 0 or relevance == "rank"
]


@dataclass(frozen=True)
class Scored:
    catalogue: Catalogue
    embeddings: np.ndarray  # float [V, D], unit rows
    cases: CaseScores


def score_data(spec: DataSpec, checkpoint_dir: Path, cases: int | None) -> Scored:
    split = leave_one_out(load_dataset(spec.path, spec.data_format).sequences)
    catalogue = Catalogue.of(split.train)
    checkpoint = load_checkpoint(checkpoint_dir)
    if checkpoint.vocab.items != catalogue.vocab.items:
        raise ValueError(f"{checkpoint_dir} was not trained on {spec.path}'s leave-one-out split")
    test = split.test if cases is None else split.test.sample(cases, seed=0)
    scores = score_tests(checkpoint, test, catalogue, max(KS), TAUS, SERVED_TAUS)
    return Scored(catalogue, item_embeddings(checkpoint), scores)


def reranked(scored: Scored, setting: Setting) -> tuple[np.ndarray, float, float]:
    """The published lists int64 [N, LIST_LENGTH], the share of slots exploration filled and
    the re-ranking's microseconds per window."""
    policy, head = setting.policy(), scored.catalogue.head()
    rng = np.random.default_rng(0)
    lists, explored, seconds = [], 0, 0.0
    for start in range(0, len(scored.cases.targets), BATCH):
        candidates = scored.cases.candidates[setting.tau][start : start + BATCH, : setting.k]
        vectors = scored.embeddings[candidates]
        similarity = np.einsum("bkd,bjd->bkj", vectors, vectors).astype(np.float32)
        probabilities = scored.cases.probabilities[setting.tau][start : start + BATCH, : setting.k]
        started = time.perf_counter()
        noise = rng.random(probabilities.shape)
        result = rerank(probabilities, similarity, ~head[candidates], LIST_LENGTH, policy, noise)
        seconds += time.perf_counter() - started
        lists.append(np.take_along_axis(candidates, result.columns, axis=1))
        explored += int(np.sum(result.mechanisms == EXPLORATION))
    published = np.concatenate(lists)
    return published, explored / published.size, seconds / len(published) * 1e6


def grid_rows(scored: Scored) -> list[dict[str, Any]]:
    """Each setting's list metrics, with its NDCG@10 change against the model's top 10."""
    targets = scored.cases.targets
    base = list_ranks(reranked(scored, BASELINE)[0], targets)
    rows = []
    for setting in tqdm(SETTINGS, desc="rerank", unit="setting", leave=False):
        lists, explored_share, micros = reranked(scored, setting)
        change, error = ndcg_change(list_ranks(lists, targets), base)
        rows.append(
            {
                **asdict(setting),
                **list_report(lists, targets, scored.catalogue, scored.embeddings),
                "ndcg@10_change": change,
                "ndcg@10_change_se": error,
                "explored_share": explored_share,
                "rerank_us_per_window": micros,
            }
        )
    return rows


def _setting(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in SETTING_FIELDS}


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(_setting(row).values())


def relative_changes(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, float]]:
    """Per setting: relative change of NDCG@10, long-tail share and ILD against the baseline."""
    base = next(row for row in rows if _key(row) == _key(asdict(BASELINE)))
    return {
        _key(row): {name: row[name] / base[name] - 1.0 for name in ("ndcg@10", "long_tail@10", "ild@10")}
        for row in rows
    }


def choose_default(grids: dict[str, list[dict[str, Any]]], k: int | None = None) -> dict[str, Any]:
    """The setting (of those with ``k`` candidates, if given) meeting the targets on every data
    set with the least NDCG@10 loss on the worst one. Where none does, within the NDCG@10
    budget: the most diversity among those that still meet the long-tail target, else the
    largest worst gain in long-tail share and diversity together."""
    changes = {name: relative_changes(rows) for name, rows in grids.items()}
    keys = [key for key in next(iter(changes.values())) if k is None or key[0] == k]

    def worst(key: tuple[Any, ...], metric: str) -> float:
        return min(by_key[key][metric] for by_key in changes.values())

    affordable = [key for key in keys if worst(key, "ndcg@10") >= -MAX_NDCG_LOSS]
    long_tail = [key for key in affordable if worst(key, "long_tail@10") >= MIN_GAIN]
    qualifying = [key for key in long_tail if worst(key, "ild@10") >= MIN_GAIN]
    met = bool(qualifying)
    if met:
        chosen = max(qualifying, key=lambda key: worst(key, "ndcg@10"))
    elif long_tail:
        chosen = max(long_tail, key=lambda key: (worst(key, "ild@10"), worst(key, "ndcg@10")))
    else:
        chosen = max(affordable, key=lambda key: min(worst(key, "long_tail@10"), worst(key, "ild@10")))
    return {
        "targets_met": met,
        "setting": dict(zip(SETTING_FIELDS, chosen, strict=True)),
        "relative_changes": {name: by_key[chosen] for name, by_key in changes.items()},
        "qualifying": [list(key) for key in qualifying],
    }


def markdown_rows(grid: list[dict[str, Any]], taus: list[dict[str, Any]]) -> str:
    """One data set's tables: the re-ranking grid and the popularity correction."""
    return "\n\n".join(
        [
            "Re-ranking (NDCG@10 change and its standard error relative to the model's top 10):",
            markdown_table(grid, (*SETTING_FIELDS, *GRID_COLUMNS, "rerank_us_per_window")),
            "Popularity correction, scores - tau * log popularity:",
            markdown_table(taus, ("tau", "ndcg@10_change", "ndcg@10_change_se", *TAU_COLUMNS)),
        ]
    )


def markdown(results: dict[str, Any]) -> str:
    parts = ["# Exploration, diversity and popularity correction", ""]
    for title, default in results["default"].items():
        parts += [f"Chosen setting ({title}): `{default['setting']}`; targets met: {default['targets_met']}."]
        parts += [f"Relative changes against the model's top 10: `{default['relative_changes']}`", ""]
    for name, data in results["data"].items():
        parts += [
            f"## {name} ({data['cases']} test cases)",
            "",
            markdown_rows(data["grid"], data["taus"]),
            "",
        ]
    return "\n".join(parts)


def plot_curves(name: str, data: dict[str, Any], path: Path) -> None:
    """NDCG@10 against each beyond-accuracy metric, a row per K, a line per family with the
    diversity weight rising along it; ``data["grid"]`` its rows, ``data["taus"]`` (optional)
    the popularity correction's, drawn in every row (it re-ranks nothing)."""
    from matplotlib import colormaps

    with saved_figure(path, len(KS), len(BEYOND), (4.2 * len(BEYOND), 3.6 * len(KS))) as (_, axes):
        for row_axes, k in zip(axes, KS, strict=True):
            rows = [row for row in data["grid"] if row["k"] == k]
            families = sorted({Setting(**_setting(row)).family for row in rows})
            for axis, metric in zip(row_axes, BEYOND, strict=True):
                for number, family in enumerate(families):
                    line = [row for row in rows if Setting(**_setting(row)).family == family]
                    style = ("o-", "s--")[family.startswith("rank")]
                    ndcg = [r["ndcg@10"] for r in line]
                    # More families than the default colour cycle has colours: one each.
                    colour = colormaps["tab20"](number % 20)
                    axis.plot([r[metric] for r in line], ndcg, style, color=colour, ms=3, label=family)
                taus = data.get("taus", [])
                axis.plot([r[metric] for r in taus], [r["ndcg@10"] for r in taus], "k^:", ms=3, label="tau")
                axis.set(title=f"{name}, K={k}", xlabel=metric, ylabel="NDCG@10")
            row_axes[0].legend(fontsize=6)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("runs", nargs="+", help="FORMAT:PATH=CHECKPOINT_DIR")
    parser.add_argument("--cases", type=int, default=None, help="test cases per data set (all)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"data": {}}
    for run in args.runs:
        spec_text, _, checkpoint_dir = run.rpartition("=")
        spec = DataSpec.parse(spec_text)
        scored = score_data(spec, Path(checkpoint_dir), args.cases)
        data = {
            "cases": len(scored.cases.targets),
            "grid": grid_rows(scored),
            "taus": tau_rows(scored.cases, scored.catalogue, scored.embeddings),
        }
        name = f"{spec.path.parent.name}/{spec.path.name}"  # u.data alone says little
        results["data"][name] = data
        plot_curves(name, data, args.out_dir / f"curves-{name.replace('/', '-')}.png")
    grids = {name: data["grid"] for name, data in results["data"].items()}
    results["default"] = {"any K": choose_default(grids), f"K={KS[0]}": choose_default(grids, KS[0])}
    plot_taus({name: data["taus"] for name, data in results["data"].items()}, args.out_dir / "taus.png")
    (args.out_dir / "exploration.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / "exploration.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
