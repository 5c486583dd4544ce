"""A model to serve when the repository has none: trained and exported on synthetic data.

The demo, the benchmark and the integration tests call this; it runs the model commands as a
child process, so the tools never load torch themselves.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ModelBootstrapError", "ensure_model", "has_version"]

# Minutes of training: enough for the synthetic data's planted rules, short enough for a demo.
_TRAINING_MINUTES = 1.5


class ModelBootstrapError(RuntimeError):
    """Generating, training or exporting the demo model failed; the message says which step."""


def has_version(repository: Path, model_name: str) -> bool:
    model_dir = repository / model_name
    return model_dir.is_dir() and any(p.name.isdigit() for p in model_dir.iterdir())


def ensure_model(
    repository: Path,
    model_name: str,
    checkpoint: Path | None = None,
    training_minutes: float = _TRAINING_MINUTES,
) -> None:
    """Train and export a small model on synthetic data unless a version is already there;
    the training checkpoint is kept at ``checkpoint`` if given (to export other versions).
    A shorter ``training_minutes`` gives a weaker model on the same path, for callers that
    need one to serve rather than to judge."""
    if has_version(repository, model_name):
        return
    print(f"[model] no model in {repository / model_name}: training a small one on synthetic data")
    with tempfile.TemporaryDirectory(prefix="nextaction-train-") as tmp:
        data = Path(tmp) / "events.jsonl"
        checkpoint = checkpoint or Path(tmp) / "checkpoint"
        steps = {
            "generate": ["--out", str(data), "--seed", "0"],
            # One network: a teacher and a student on half the demo's minutes each both end
            # far from settled (docs/2026-11-30-training-budget.md, section 16).
            "train": [
                "--data",
                str(data),
                "--out",
                str(checkpoint),
                "--time-budget",
                str(training_minutes),
                "--distillation",
                "0",
            ],
            "export": [
                "--checkpoint",
                str(checkpoint),
                "--repository",
                str(repository),
                "--model-name",
                model_name,
            ],
        }
        for command, argv in steps.items():
            done = subprocess.run([sys.executable, "-m", "cli", command, *argv], check=False)
            if done.returncode != 0:
                raise ModelBootstrapError(
                    f"`nextaction {command}` for the demo model failed with exit code {done.returncode} "
                    "(its output is above)"
                )
