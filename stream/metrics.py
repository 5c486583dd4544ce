"""Prometheus metrics of the worker, served by :mod:`stream.endpoint` (docs/observe.md says what
each means and what to do when it moves)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from faust.types import EventT
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

__all__ = ["StreamMetrics", "package_version"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class StreamMetrics:
    registry: CollectorRegistry
    events_consumed: Counter
    events_invalid: Counter
    events_with_unknown_fields: Counter
    events_acknowledged: Counter
    recommendations_published: Counter
    inference_latency: Histogram
    inference_batch_size: Histogram
    event_to_publication: Histogram
    triton_errors: Counter
    assigned_partitions: Gauge
    agent_starts: Counter
    batch_failures: Counter
    windows_reset: Counter
    triton_circuit_open: Gauge
    windows_stored: Gauge
    windows_stored_bytes: Gauge
    windows_evicted: Counter
    fallback_recommendations: Counter
    input_held_bytes: Gauge
    oldest_unacknowledged_age: Gauge
    consumer_lag: Gauge
    partition_rewinds: Counter
    last_publication: Gauge
    ready: Gauge
    build: Info
    model: Info

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> StreamMetrics:
        registry = registry or CollectorRegistry()
        # Memory, CPU, open files and the collector's pauses, as prometheus_client's default
        # registry has them; the worker serves its own registry only.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        build = Info("nextaction_build", "The worker's package version", registry=registry)
        build.info({"version": package_version()})
        return cls(
            registry=registry,
            events_consumed=Counter(
                "nextaction_events_consumed", "Events read from the input topic", registry=registry
            ),
            events_invalid=Counter(
                "nextaction_events_invalid",
                "Events sent to the dead-letter topic, by reason",
                ["reason"],
                registry=registry,
            ),
            events_with_unknown_fields=Counter(
                "nextaction_events_with_unknown_fields",
                "Valid events that carried fields this worker does not know (ignored; docs/contracts.md)",
                registry=registry,
            ),
            events_acknowledged=Counter(
                "nextaction_events_acknowledged",
                "Events whose batch delivered all its outputs; their offsets may be committed",
                registry=registry,
            ),
            recommendations_published=Counter(
                "nextaction_recommendations_published",
                "Recommendation records published",
                registry=registry,
            ),
            inference_latency=Histogram(
                "nextaction_inference_latency_seconds",
                "Time to score one stream batch on Triton",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            inference_batch_size=Histogram(
                "nextaction_inference_batch_windows",
                "Windows scored per stream batch",
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            event_to_publication=Histogram(
                "nextaction_event_to_publication_seconds",
                "From an event's Kafka timestamp to the publication of its recommendation",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            triton_errors=Counter(
                "nextaction_triton_errors",
                "Failed Triton calls, by gRPC status",
                ["status"],
                registry=registry,
            ),
            assigned_partitions=Gauge(
                "nextaction_assigned_partitions",
                "Input-topic partitions this worker owns (0 until it joins its consumer group)",
                registry=registry,
            ),
            agent_starts=Counter(
                "nextaction_agent_starts",
                "Times the agent started in this process (more than 1 means Faust restarted it)",
                registry=registry,
            ),
            batch_failures=Counter(
                "nextaction_batch_failures",
                "Batches that failed; each stops the worker, whose restart reads the batch again",
                registry=registry,
            ),
            windows_reset=Counter(
                "nextaction_windows_reset",
                "Stored windows that did not decode and were started afresh",
                registry=registry,
            ),
            triton_circuit_open=Gauge(
                "nextaction_triton_circuit_open",
                "1 while Triton is treated as out and batches get the fallback",
                registry=registry,
            ),
            windows_stored=Gauge(
                "nextaction_windows_stored",
                "Users whose window this worker holds (its partitions' and standbys')",
                registry=registry,
            ),
            windows_stored_bytes=Gauge(
                "nextaction_windows_stored_bytes",
                "Bytes of the stored windows' values",
                registry=registry,
            ),
            windows_evicted=Counter(
                "nextaction_windows_evicted",
                "Idle users evicted (NEXTACTION_USER_IDLE_EVICT_S), a tombstone in the changelog each",
                registry=registry,
            ),
            fallback_recommendations=Counter(
                "nextaction_fallback_recommendations",
                "Recommendation records published from the fallback while Triton was out",
                registry=registry,
            ),
            input_held_bytes=Gauge(
                "nextaction_input_held_bytes",
                "Bytes of input events fetched and not yet acknowledged "
                "(fetching pauses at NEXTACTION_INPUT_BUFFER_MAX_BYTES)",
                registry=registry,
            ),
            oldest_unacknowledged_age=Gauge(
                "nextaction_oldest_unacknowledged_age_seconds",
                "Seconds since the oldest batch taken from the input and not yet acknowledged was taken "
                "(0 when none is)",
                registry=registry,
            ),
            consumer_lag=Gauge(
                "nextaction_consumer_lag_records",
                "Records of an owned input partition after the last one acknowledged (its highwater "
                "less the next offset to acknowledge)",
                ["topic", "partition"],
                registry=registry,
            ),
            partition_rewinds=Counter(
                "nextaction_partition_rewinds",
                "Owned input partitions read again from the committed offset after their backlog "
                "waited NEXTACTION_STALL_REWIND_AFTER_S with no commit (a stalled consumer)",
                ["topic", "partition"],
                registry=registry,
            ),
            last_publication=Gauge(
                "nextaction_last_publication_timestamp_seconds",
                "Unix time of the last batch that published recommendations (0: none yet)",
                registry=registry,
            ),
            ready=Gauge(
                "nextaction_ready",
                "1 while /readyz answers 200: partitions assigned, windows restored, model ready",
                registry=registry,
            ),
            build=build,
            model=Info(
                "nextaction_model",
                "The Triton model and version that scored this worker's latest batch",
                registry=registry,
            ),
        )

    def observe_published(self, batch_events: int, valid: Sequence[EventT], recommendations: int) -> None:
        """A batch's outputs are delivered: ``valid`` are its valid events, whose latency is
        measured from their Kafka timestamps."""
        # Acknowledged last: whoever waits for a count of acknowledged events then reads the
        # batch's other counters complete.
        self.recommendations_published.inc(recommendations)
        now = time.time()
        if recommendations:
            self.last_publication.set(now)
        for source in valid:
            self.event_to_publication.observe(max(0.0, now - source.message.timestamp))
        self.events_acknowledged.inc(batch_events)


def package_version() -> str:
    try:
        return metadata.version("nextaction")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
