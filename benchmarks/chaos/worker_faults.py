"""Scenarios that end workers under load: SIGKILL three times (windows checked against a
replay after each restart), one of two workers killed (its partition handed over), SIGTERM."""

from __future__ import annotations

import time

from benchmarks.chaos.report import Row
from benchmarks.chaos.rig import Rig, Trial, log
from benchmarks.workload import EventSupply
from stream.shutdown import EXIT_SHUTDOWN_TIMED_OUT

__all__ = ["handover", "sigkill_restarts", "sigterm_restart"]

RATE = 400.0  # events/s: "under load", well below what one worker sustains
HANDOVER_BOUND_S = 15.0
_WAIT_S = 180.0


def _first_ack_s(trial: Trial, started: float) -> float:
    """Seconds from ``started`` until the last started worker acknowledged its first event
    (called while the load still runs: waiting for the load first would add what is left of it)."""
    trial.workers[-1].wait_acknowledged(1, timeout_s=_WAIT_S)
    return time.monotonic() - started


def sigkill_restarts(rig: Rig) -> Row:
    rng = rig.rng(3)
    phase_s = rig.size(4, 20)
    kills = 3
    trial = Trial(rig, "sigkill")
    supply = EventSupply(users=int(rig.size(200, 2000)), seed=rig.seed + 3)
    row = Row(
        "3 worker SIGKILLed x3",
        f"{kills} x {phase_s:g} s at {RATE:g}/s, 1 partition",
        f"SIGKILL at a random moment of each phase, restart at once; windows read back from "
        f"{trial.settings.app_id}-windows-changelog after each restart",
    )
    worker = trial.start_worker()
    worker.wait_assigned()
    recoveries, catch_ups = [], []
    with trial.abandoned_on_error():
        for kill in range(1, kills + 1):
            load = trial.offer(supply.take(int(RATE * phase_s)), RATE)
            time.sleep(rng.uniform(0.2, 0.9) * phase_s)
            log(f"3: SIGKILL {kill} of {kills}")
            trial.kill(worker)
            started = time.monotonic()
            worker = trial.start_worker()
            recoveries.append(_first_ack_s(trial, started))
            load.join()
            loaded = time.monotonic()
            trial.wait_caught_up(row, _WAIT_S)
            catch_ups.append(time.monotonic() - loaded)
            mismatched = trial.outputs().window_mismatches
            row.require(
                not mismatched, f"after restart {kill}: {len(mismatched)} windows differ from a replay"
            )
        outputs = trial.outputs()
    row.recovery_s = max(recoveries)
    row.notes.append("recovery = restart to first acknowledged event (table restored), worst of 3")
    row.notes.append(
        "all committed " + ", ".join(f"{seconds:.1f}" for seconds in catch_ups) + " s after each load ended"
    )
    return trial.finish(row, outputs)


def handover(rig: Rig) -> Row:
    rng = rig.rng(4)
    load_s = rig.size(10, 60)
    trial = Trial(rig, "handover", topic_partitions=2)
    supply = EventSupply(users=int(rig.size(200, 2000)), partitions=2, seed=rig.seed + 4)
    row = Row(
        "4 one of two workers SIGKILLed",
        f"{load_s:g} s at {RATE:g}/s, 2 partitions, 2 workers in one group",
        "SIGKILL of one worker at a random moment",
    )
    workers = [trial.start_worker(), trial.start_worker()]
    with trial.abandoned_on_error():
        for worker in workers:
            worker.wait_assigned()
        time.sleep(trial.settings.broker_session_timeout_s)  # the group settles on its final split
        load = trial.offer(supply.take(int(RATE * load_s)), RATE)
        time.sleep(rng.uniform(0.2, 0.5) * load_s)
        victim, survivor = rng.sample(workers, 2)
        log("4: SIGKILL one of the two workers")
        trial.kill(victim)
        killed = time.monotonic()
        survivor.wait_for_metrics(
            lambda values: values.get("nextaction_assigned_partitions", 0) == 2,
            "the survivor owns both partitions",
            timeout_s=_WAIT_S,
        )
        row.recovery_s = time.monotonic() - killed
        load.join()
        outputs = trial.collect(row, _WAIT_S)
    row.expect(row.recovery_s <= HANDOVER_BOUND_S, f"handover took over {HANDOVER_BOUND_S:g} s")
    row.notes.append("recovery = kill to the survivor owning both partitions")
    return trial.finish(row, outputs)


def sigterm_restart(rig: Rig) -> Row:
    rng = rig.rng(6)
    load_s = rig.size(8, 60)
    trial = Trial(rig, "sigterm", shutdown_timeout_s=10)
    supply = EventSupply(users=int(rig.size(200, 2000)), seed=rig.seed + 6)
    row = Row(
        "6 SIGTERM and restart",
        f"{load_s:g} s at {RATE:g}/s, 1 partition",
        "SIGTERM at a random moment, restart after it exits",
    )
    worker = trial.start_worker()
    with trial.abandoned_on_error():
        worker.wait_assigned()
        load = trial.offer(supply.take(int(RATE * load_s)), RATE)
        time.sleep(rng.uniform(0.2, 0.6) * load_s)
        log("6: SIGTERM")
        code = trial.terminate(worker)
        row.require(code in (0, EXIT_SHUTDOWN_TIMED_OUT), f"the worker exited with code {code} on SIGTERM")
        row.notes.append(f"exit code {code}")
        started = time.monotonic()
        trial.start_worker()
        row.recovery_s = _first_ack_s(trial, started)
        load.join()
        outputs = trial.collect(row, _WAIT_S)
    row.notes.append("recovery = restart to first acknowledged event")
    return trial.finish(row, outputs)
