"""The probes: what /livez and /readyz answer in each state of the worker, over real HTTP."""

from __future__ import annotations

import pytest

from stream.endpoint import serve_metrics
from stream.failure import FailFast
from stream.health import Health
from stream.metrics import StreamMetrics
from tests.doubles import Clock, http_get

pytestmark = pytest.mark.unit


def health_with(clock: Clock | None = None, failure: FailFast | None = None) -> Health:
    return Health(failure or FailFast(), stale_after_s=30, clock=clock or Clock())


def started(health: Health, partitions: int = 2) -> Health:
    health.rebalancing()
    health.assigned(partitions)
    health.recovered()
    health.model_ready()
    return health


def test_liveness_follows_the_loop_ticks_not_the_events() -> None:
    clock = Clock()
    health = health_with(clock)
    assert health.live().ok  # starting: the creation counts as a tick
    for _ in range(100):  # an idle stream: no events, but the loop ticks every second
        clock.now += 1
        health.tick()
    assert health.live().ok
    clock.now += 31
    verdict = health.live()
    assert not verdict.ok and "stalled" in verdict.reason
    health.tick()
    assert health.live().ok


def test_readiness_needs_an_assignment_then_the_restored_table_then_the_model() -> None:
    health = health_with()
    assert "assignment" in health.ready().reason
    health.rebalancing()
    health.assigned(2)
    assert not health.ready().ok and "rebalancing" in health.ready().reason
    health.recovered()
    assert not health.ready().ok and "model" in health.ready().reason
    health.model_ready()
    assert health.ready() == (True, "ready: 2 partitions")
    health.rebalancing()  # a rebalance takes it out until its recovery completes
    assert not health.ready().ok
    health.assigned(1)
    health.recovered()
    assert health.ready() == (True, "ready: 1 partitions")


def test_an_open_circuit_makes_the_worker_unready_and_its_closing_ready_again() -> None:
    health = started(health_with())
    health.circuit(True)
    assert not health.ready().ok and "circuit open" in health.ready().reason
    assert health.live().ok  # the fallback keeps the stream going: not a reason to restart
    health.circuit(False)
    assert health.ready().ok


def test_a_spare_worker_without_partitions_is_ready() -> None:
    assert started(health_with(), partitions=0).ready() == (True, "ready: no partitions assigned (spare)")


def test_a_failed_batch_fails_both_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = FailFast()
    monkeypatch.setattr("os.kill", lambda pid, sig: None)  # the real one stops this process
    health = started(health_with(failure=failure))
    failure.stop_worker(RuntimeError("boom"))
    assert health.live() == health.ready() == (False, "stopping: a batch failed (RuntimeError)")
    assert health.not_reading() == "a batch failed"


def test_the_worker_reads_its_input_once_it_owns_partitions_and_restored_their_windows() -> None:
    health = health_with()
    assert health.not_reading() == "no partitions assigned"
    health.rebalancing()
    health.assigned(2)
    assert health.not_reading() == "rebalancing, restoring the windows table"
    health.recovered()
    assert health.not_reading() is None  # the model is not needed: the fallback publishes
    health.assigned(0)
    assert health.not_reading() == "no partitions assigned"


def test_the_endpoint_serves_metrics_and_both_probes_on_the_port_it_bound() -> None:
    metrics = StreamMetrics.create()
    health = health_with()
    metrics.ready.set_function(lambda: health.ready().ok)
    port = serve_metrics(metrics.registry, health, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"

    assert http_get(f"{base}/livez") == (200, "live\n")
    status, body = http_get(f"{base}/readyz")
    assert status == 503 and body.startswith("not ready: waiting for the consumer group")
    status, text = http_get(f"{base}/metrics")
    assert status == 200 and "nextaction_ready 0.0" in text and "process_resident_memory_bytes" in text
    assert 'nextaction_build_info{version="' in text

    started(health)
    assert http_get(f"{base}/readyz") == (200, "ready: 2 partitions\n")
    assert "nextaction_ready 1.0" in http_get(f"{base}/metrics")[1]
    assert http_get(f"{base}/other")[0] == 404


def test_a_busy_port_is_an_oserror() -> None:
    health = health_with()
    port = serve_metrics(StreamMetrics.create().registry, health, "127.0.0.1", 0)
    with pytest.raises(OSError):
        serve_metrics(StreamMetrics.create().registry, health, "127.0.0.1", port)
