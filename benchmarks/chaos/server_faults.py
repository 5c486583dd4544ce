"""Scenarios that take a server away under a running worker: Triton SIGKILLed and restarted,
the broker restarted (storage that survives it: Tansu on a local S3), and a model version with
another window and top-k rolled out into the repository Triton polls."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import tritonclient.grpc as grpcclient

from benchmarks.chaos.report import Row
from benchmarks.chaos.rig import Rig, Trial, log
from benchmarks.workload import EventSupply
from tools.embedded import EmbeddedBroker, EmbeddedTriton
from tools.embedded.s3 import EmbeddedS3
from tools.polling import wait_until

__all__ = ["broker_restart", "rollout", "triton_kill"]

RATE = 300.0  # events/s
MODEL_BACK_BOUND_S = 10.0
# Tansu on S3 storage answers a fetch that waits less with no records (a consumer read 0 of 600
# records with a 10 ms wait, all 600 with 500 ms).
S3_FETCH_MAX_WAIT_MS = 500
ROLLOUT_WINDOW, ROLLOUT_TOP_K = 30, 25
_WAIT_S = 180.0


def triton_kill(rig: Rig) -> Row:
    outage_s = rig.size(10, 30)
    before_s, after_s = 3.0, rig.size(5, 20)
    trial = Trial(rig, "triton", triton_outage_after_s=1.0, triton_probe_interval_s=1.0)
    supply = EventSupply(users=int(rig.size(200, 2000)), seed=rig.seed + 2)
    total_s = before_s + outage_s + after_s + 5
    row = Row(
        "2 Triton SIGKILLed",
        f"{total_s:g} s at {RATE:g}/s",
        f"SIGKILL of tritonserver, restarted {outage_s:g} s later on the same ports",
    )
    worker = trial.start_worker()
    with trial.abandoned_on_error():
        try:
            worker.wait_assigned()
            load = trial.offer(supply.take(int(RATE * total_s)), RATE)
            time.sleep(before_s)
            log(f"2: SIGKILL tritonserver for {outage_s:g} s")
            rig.triton.kill()
            time.sleep(outage_s)
            rig.triton.start()
            rig.triton.wait_for_model(rig.model_name)
            returned_ms = time.time() * 1000
            log("2: Triton is back")
            load.join()
            outputs = trial.collect(row, _WAIT_S)
        finally:
            rig.triton.start()  # for the scenarios after this one, whatever happened
    records = outputs.recommendations
    fallback = [r for r in records if r["source"] == "fallback"]
    row.require(bool(fallback), "no fallback record while Triton was out")
    row.require(all(r["model_version"] is None for r in fallback), "a fallback record names a model version")
    back = [
        r["generated_at_ms"]
        for r in records
        if r["source"] == "model" and r["generated_at_ms"] >= returned_ms
    ]
    if back:
        row.recovery_s = max(0.0, (min(back) - returned_ms) / 1000)
        row.expect(row.recovery_s <= MODEL_BACK_BOUND_S, f"model records back after {MODEL_BACK_BOUND_S:g} s")
    else:
        row.require(False, "no model record after Triton's return")
    row.notes.append(f"{len(fallback):,} fallback records; recovery = Triton ready to first model record")
    return trial.finish(row, outputs)


def broker_restart(rig: Rig) -> Row:
    load_s, down_s = rig.size(4, 30), 3.0
    row = Row(
        "5 broker restarted",
        f"2 x {load_s:g} s at {RATE:g}/s",
        f"Tansu (s3:// storage on a local moto_server) stopped for {down_s:g} s under a running worker",
        notes=[
            f"NEXTACTION_TANSU_FETCH_MAX_WAIT_MS={S3_FETCH_MAX_WAIT_MS}: S3 storage answers no shorter fetch"
        ],
    )
    embedded = rig.workdir / "s3-broker"
    with EmbeddedS3(embedded) as s3:
        broker = EmbeddedBroker(embedded, storage=s3.storage_url, env=s3.env).start()
        try:
            trial = Trial(
                rig, "broker", bootstrap=broker.bootstrap, tansu_fetch_max_wait_ms=S3_FETCH_MAX_WAIT_MS
            )
            supply = EventSupply(users=int(rig.size(200, 2000)), seed=rig.seed + 5)
            worker = trial.start_worker()
            with trial.abandoned_on_error():
                worker.wait_assigned()
                trial.offer(supply.take(int(RATE * load_s)), RATE).join()
                trial.wait_caught_up(row, _WAIT_S)
                acknowledged = worker.metrics()["nextaction_events_acknowledged_total"]
                log(f"5: broker down for {down_s:g} s")
                broker.stop()
                time.sleep(down_s)
                broker.start()
                back = time.monotonic()
                log("5: broker back")
                load = trial.offer(supply.take(int(RATE * load_s)), RATE)
                worker.wait_for_metrics(
                    lambda values: values.get("nextaction_events_acknowledged_total", 0) > acknowledged,
                    "an event sent after the restart acknowledged",
                    timeout_s=rig.size(60, _WAIT_S),
                )
                row.recovery_s = time.monotonic() - back
                load.join()
                trial.note_crashes()
                if trial.crashes:  # restart it, so the rest of the row still says what was lost
                    trial.start_worker()
                outputs = trial.collect(row, rig.size(60, _WAIT_S))
            row.notes.append("recovery = broker back to the first event sent after it acknowledged")
            return trial.finish(row, outputs)
        finally:
            broker.stop()


def _export(rig: Rig, repository: str) -> None:
    assert rig.checkpoint is not None
    argv = ["--checkpoint", str(rig.checkpoint), "--repository", repository]
    argv += ["--window", str(ROLLOUT_WINDOW), "--served-top-k", str(ROLLOUT_TOP_K)]
    done = subprocess.run(
        [sys.executable, "-m", "cli", "export", *argv], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"export failed ({done.returncode}): {done.stderr[-2000:]}")


def rollout(rig: Rig) -> Row:
    after_s = rig.size(5, 30)
    row = Row(
        "7 model roll-out",
        f"{RATE:g}/s during the export, then {after_s:g} s",
        f"version 2 (window {ROLLOUT_WINDOW}, top-k {ROLLOUT_TOP_K}) exported into the served repository",
    )
    if rig.checkpoint is None:
        row.require(False, "no training checkpoint to export a second version from (pass --checkpoint)")
        return row
    repository = rig.workdir / "rollout-repository"
    shutil.copytree(rig.model_repository, repository)
    with EmbeddedTriton(repository, rig.workdir / "embedded") as triton:
        triton.wait_for_model(rig.model_name)
        trial = Trial(rig, "rollout", triton_url=triton.grpc_url)
        supply = EventSupply(users=int(rig.size(200, 2000)), seed=rig.seed + 7)
        worker = trial.start_worker()
        with trial.abandoned_on_error():
            worker.wait_assigned()
            client = grpcclient.InferenceServerClient(triton.grpc_url)
            exporting = time.monotonic()
            load = trial.offer(supply.take(int(RATE * 15)), RATE)
            log("7: exporting version 2")
            _export(rig, str(repository))
            wait_until(
                lambda: client.is_model_ready(rig.model_name, "2"),
                timeout_s=_WAIT_S,
                what="version 2 served",
            )
            ready_ms = time.time() * 1000
            log(f"7: version 2 served ({time.monotonic() - exporting:.0f} s after the export began)")
            load.join()
            last = supply.take(int(RATE * after_s))
            trial.offer(last, RATE).join()
            outputs = trial.collect(row, _WAIT_S)
    records = outputs.recommendations
    newest = {message.user_id: message.event_id for message in last}
    final = [r for r in records if r["trigger_event_id"] in set(newest.values())]
    row.require(bool(final), "no record for the events sent after the roll-out")
    row.require(
        all(r["model_version"] == "2" for r in final), "records after the roll-out not from version 2"
    )
    row.require(
        all(len(r["items"]) == trial.settings.published_top_k for r in records),
        f"a record without {trial.settings.published_top_k} items",
    )
    v2 = [r["generated_at_ms"] for r in records if r["model_version"] == "2"]
    row.recovery_s = max(0.0, (min(v2) - ready_ms) / 1000) if v2 else None
    row.notes.append("recovery = version 2 ready to its first record")
    return trial.finish(row, outputs)
