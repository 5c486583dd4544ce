"""Retrain as the model ages: the events since the served version, a model warm-started from
its checkpoint, both compared on the newest events, and a new version only through the gate.

The newest ``holdout`` events are held out: neither model trains on them, each ranks its
own catalogue for every one of them given the user's earlier events (an item the old model
never saw is a miss for it, as in serving). Same cases for both, so the figures compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from serving.checkpoint import Checkpoint, load_checkpoint
from serving.data import UserSequence, user_sequences
from serving.evaluation import Cases, Catalogue, evaluate
from serving.export import CHECKPOINT, export
from serving.model_versions import ModelVersion
from serving.quality_gate import GateFigures, check_gate
from serving.train import TrainConfig, train
from serving.training_run import model_scorer
from serving.triton_config import SERVED_TOP_K

__all__ = ["NewestEvents", "RetrainResult", "newest_events", "retrain", "since_version"]


@dataclass(frozen=True)
class NewestEvents:
    """The held-out tail: evaluation cases, and the events left to train on."""

    cases: Cases
    training: list[UserSequence]
    fingerprint: str


@dataclass(frozen=True)
class RetrainResult:
    old: dict[str, float]  # newest-events metrics of the served version
    new: dict[str, float]  # and of the retrained model
    verdict: str  # the gate's line
    version_dir: Path
    warm_started_items: int | None


def since_version(
    events: Sequence[tuple[int, int, dict[str, Any]]], served: ModelVersion, topic: str
) -> list[tuple[int, int, dict[str, Any]]]:
    """The (partition, offset, event)s the served version was not trained on: past the topic
    offsets its manifest records, or, for a version trained from a file, newer than its
    newest training event."""
    trained_to = served.manifest.get("trained_to") or {}
    if trained_to.get("topic") == topic:
        offsets = {int(p): o for p, o in trained_to["offsets"].items()}
        return [e for e in events if e[1] >= offsets.get(e[0], 0)]
    newest = (served.manifest.get("data") or {}).get("newest_event_ms", 0)
    return [e for e in events if e[2]["ts"] > newest]


def newest_events(events: Sequence[Mapping[str, Any]], holdout: int) -> NewestEvents:
    """The newest ``holdout`` events (by time) as cases, the rest as training sequences."""
    ordered = sorted(events, key=lambda e: e["ts"])
    tail = {str(e["event_id"]) for e in ordered[len(ordered) - holdout :]}
    inputs, targets = [], []
    digest = hashlib.sha256()
    for seq in user_sequences(events):
        for t in range(1, len(seq)):
            if seq.event_ids[t] in tail:
                inputs.append(seq.head(t))
                targets.append(seq.items[t])
                digest.update(f"{seq.user_id}\t{seq.event_ids[t]}\n".encode())
    training = user_sequences(e for e in events if str(e["event_id"]) not in tail)
    return NewestEvents(Cases(inputs, targets), training, digest.hexdigest())


def _newest_metrics(checkpoint: Checkpoint, cases: Cases) -> dict[str, float]:
    # Each model ranks its own vocabulary; counts only feed the long-tail share, not kept here.
    catalogue = Catalogue(checkpoint.vocab, np.zeros(len(checkpoint.vocab), dtype=np.int64))
    metrics = evaluate(model_scorer(checkpoint.model, checkpoint.vocab), cases, catalogue).to_dict()
    return {k: metrics[k] for k in ("hr@10", "ndcg@10", "users")}


def retrain(
    events: Sequence[Mapping[str, Any]],
    served: ModelVersion,
    out_dir: Path,
    train_config: TrainConfig,
    *,
    holdout: int,
    warm: bool = True,
    force: bool = False,
    min_gain: float = 0.0,
    provenance: Mapping[str, Any] | None = None,
) -> RetrainResult:
    """Train on ``events`` but the newest ``holdout``, compare with ``served`` on those, and
    export into ``served``'s repository if the gate lets it (GateRefused otherwise)."""
    old = load_checkpoint(served.path / CHECKPOINT)
    newest = newest_events(events, holdout)
    # One network of the served architecture, started from its first network.
    model_config = replace(old.model.config, networks=1)
    trained = train(
        newest.training,
        out_dir,
        model_config,
        replace(train_config, max_networks=1),
        progress=False,
        initial=old if warm else None,
    )
    old_metrics = _newest_metrics(old, newest.cases)
    new_metrics = _newest_metrics(trained, newest.cases)
    verdict = check_gate(
        GateFigures("retrained, newest events", new_metrics, newest.fingerprint),
        GateFigures(f"version {served.number}, newest events", old_metrics, newest.fingerprint),
        force,
        min_gain,
    )
    repository = served.path.parent.parent
    manifest = served.manifest
    extra = {
        "retrain": {
            "from_version": served.number,
            "warm_started": warm,
            "newest_events": {"events": holdout, "old": old_metrics, "new": new_metrics},
        },
        **(provenance or {}),
    }
    version_dir = export(
        out_dir,
        repository,
        model_name=str(manifest.get("model_name", served.path.parent.name)),
        window=manifest.get("window"),
        served_top_k=int(manifest.get("top_k", SERVED_TOP_K)),
        provenance=extra,
    )
    warm_items = trained.metrics["warm_started_items"]
    return RetrainResult(old_metrics, new_metrics, verdict, version_dir, warm_items)
