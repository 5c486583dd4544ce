"""Triton stopped under a live worker and started again: users get the fallback meanwhile, the
model's recommendations come back within 10 s of Triton's return, and nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from serving.synthetic import SyntheticConfig, generate_events
from stream.shutdown import EXIT_SHUTDOWN_TIMED_OUT
from tools.embedded import EmbeddedTriton
from tools.replay import event_message
from tools.topic_reader import committed_offsets

pytestmark = pytest.mark.integration

RETURN_BOUND_S = 10.0


def test_users_get_the_fallback_while_triton_is_out_and_the_model_within_10s_of_its_return(
    worker_factory, model_repository: Path, embedded_dir: Path
) -> None:
    events = generate_events(SyntheticConfig(n_users=30, mean_events_per_user=12, seed=43))[:288]
    before, during, after = events[:120], events[120:240], events[240:]
    with EmbeddedTriton(model_repository, embedded_dir) as triton:
        triton.wait_for_model("nextaction")
        worker = worker_factory(
            triton_grpc_url=triton.grpc_url, triton_outage_after_s=1.0, triton_probe_interval_s=1.0
        ).start()
        worker.produce([event_message(event) for event in before])
        worker.wait_acknowledged(len(before))

        triton.stop()
        worker.produce([event_message(event) for event in during])
        out = worker.wait_acknowledged(len(before) + len(during))
        assert out["nextaction_triton_circuit_open"] == 1

        triton.start()
        triton.wait_for_model("nextaction")
        returned_ms = time.time() * 1000
        for event in after:  # a trickle, so the first model record shows when the model came back
            worker.produce([event_message(event)])
            time.sleep(0.25)
        metrics = worker.wait_acknowledged(len(events))

    records = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
    by_trigger = {record["trigger_event_id"]: record for record in records}
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= set(by_trigger)  # nothing lost
    during_ids = {event["event_id"] for event in during}
    fallback = [record for record in records if record["source"] == "fallback"]
    assert fallback and {record["trigger_event_id"] for record in fallback} <= during_ids | {
        event["event_id"] for event in after
    }
    assert all(record["model_version"] is None and record["items"] for record in fallback)
    resumed = min(
        record["generated_at_ms"]
        for record in records
        if record["source"] == "model" and record["generated_at_ms"] >= returned_ms
    )
    assert resumed - returned_ms <= RETURN_BOUND_S * 1000
    assert by_trigger[after[-1]["event_id"]]["source"] == "model"
    assert metrics["nextaction_triton_circuit_open"] == 0
    assert metrics["nextaction_batch_failures_total"] == 0 and metrics["nextaction_agent_starts_total"] == 1
    assert worker.stop() == 0


def test_sigterm_ends_a_worker_stuck_on_a_triton_that_is_down_within_its_deadline_and_loses_nothing(
    worker_factory, model_repository: Path, embedded_dir: Path
) -> None:
    events = generate_events(SyntheticConfig(n_users=20, mean_events_per_user=12, seed=47))[:160]
    answered, stuck = events[:80], events[80:]
    with EmbeddedTriton(model_repository, embedded_dir) as triton:
        triton.wait_for_model("nextaction")
        settings = {"triton_grpc_url": triton.grpc_url, "fallback_enabled": False, "shutdown_timeout_s": 3}
        worker = worker_factory("stuck", **settings).start()
        worker.produce([event_message(event) for event in answered])
        worker.wait_acknowledged(len(answered))

        triton.stop()
        worker.produce([event_message(event) for event in stuck])
        worker.process.wait_for_metrics(
            lambda values: values.get("nextaction_events_consumed_total", 0) >= len(events),
            "all consumed",
            60,
        )
        stopping = time.monotonic()
        assert worker.process.stop(timeout_s=30) == EXIT_SHUTDOWN_TIMED_OUT
        assert time.monotonic() - stopping < 3 + 5
        assert "did not stop within NEXTACTION_SHUTDOWN_TIMEOUT_S=3s" in worker.log.read_text()
        (committed,) = committed_offsets(
            worker.settings.kafka_bootstrap, "stuck", worker.settings.topic_events, 1
        )
        assert committed <= len(answered)  # nothing past what was answered

        triton.start()
        triton.wait_for_model("nextaction")
        restarted = worker_factory("stuck", **settings).start()
        restarted.wait_acknowledged(len(events) - committed)
        assert restarted.stop() == 0

    records = restarted.read(restarted.settings.topic_recommendations)
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= {orjson.loads(r.value)["trigger_event_id"] for r in records}
