"""``nextaction chaos``: start the shared servers, run the chosen scenarios one after another
(a scenario that cannot run becomes a failed row saying why, never a missing one), and write
the table and its JSON."""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from benchmarks.chaos import load_scenarios, server_faults, worker_faults
from benchmarks.chaos.report import Row, render_table, write_report
from benchmarks.chaos.rig import Rig, log
from tools.demo_model import ensure_model
from tools.embedded import EmbeddedBroker, EmbeddedTriton

__all__ = ["SCENARIOS", "run"]

SCENARIOS: Final[dict[int, tuple[str, Callable[[Rig], Row]]]] = {
    1: ("fuzzed messages", load_scenarios.fuzz),
    2: ("Triton SIGKILLed", server_faults.triton_kill),
    3: ("worker SIGKILLed x3", worker_faults.sigkill_restarts),
    4: ("one of two workers SIGKILLed", worker_faults.handover),
    5: ("broker restarted", server_faults.broker_restart),
    6: ("SIGTERM and restart", worker_faults.sigterm_restart),
    7: ("model roll-out", server_faults.rollout),
    8: ("soak", load_scenarios.soak),
}
MODEL_NAME: Final = "nextaction"


def _run_one(number: int, rig: Rig) -> Row:
    name, scenario = SCENARIOS[number]
    log(f"scenario {number}: {name}")
    started = time.monotonic()
    try:
        row = scenario(rig)
    except Exception as exc:
        traceback.print_exc()
        row = Row(f"{number} {name}", "-", "-")
        row.require(False, f"could not be run: {type(exc).__name__}: {str(exc)[:300]}")
    log(f"scenario {number}: {'held' if row.held else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return row


def run(
    out: Path,
    *,
    quick: bool,
    scenarios: Sequence[int],
    model_repository: Path | None = None,
    checkpoint: Path | None = None,
    workdir: Path | None = None,
    seed: int = 0,
) -> list[Row]:
    """Run ``scenarios`` (numbers of :data:`SCENARIOS`); the table goes to ``out`` and the JSON
    next to it. Without ``model_repository`` a small model is trained first, and its
    checkpoint kept for the roll-out."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nextaction-chaos-")))
        if model_repository is None:
            model_repository = workdir / "model" / "repository"
            checkpoint = checkpoint or workdir / "model" / "checkpoint"
            model_repository.mkdir(parents=True, exist_ok=True)
            ensure_model(model_repository, MODEL_NAME, checkpoint=checkpoint)
        log(f"starting the broker and Triton ({model_repository}); work files in {workdir}")
        broker = stack.enter_context(EmbeddedBroker(workdir / "embedded"))
        triton = stack.enter_context(EmbeddedTriton(model_repository, workdir / "embedded"))
        triton.wait_for_model(MODEL_NAME)
        rig = Rig(workdir, quick, seed, broker, triton, model_repository, checkpoint, MODEL_NAME)
        rows = [_run_one(number, rig) for number in scenarios]
    json_path = write_report(rows, out)
    print(render_table(rows), flush=True)
    log(f"wrote {out} and {json_path}")
    return rows
