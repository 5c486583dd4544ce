"""Run one stream worker: the Faust app plus its metrics endpoint.

With no external addresses configured, the worker starts its own embedded broker and Triton
(handy for a first look); the demo and production pass addresses instead.
"""

from __future__ import annotations

import gc
import logging
from contextlib import ExitStack

import faust

from stream.admin import ensure_topics
from stream.agents import RecommendAgent
from stream.app import create_app
from stream.embedded import EmbeddedBroker, EmbeddedTriton
from stream.inference import check_model_ready
from stream.metrics import StreamMetrics, serve_metrics
from stream.settings import Settings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)

# CPython's default thresholds (700, 10, 10) made the worker run a full collection every
# ~3,300 events, 35-70 ms each with the event loop stopped, freeing almost nothing (the
# worker's garbage goes by reference counting): those stalls were the stream's tail latency. Young
# collections now come every 50,000 allocations, full ones rarely. Same machine and load,
# p99 event-to-recommendation: trivial model at 6,400 events/s 116-142 -> 68-75 ms; real
# model at 3,800 events/s 182 -> 112 ms.
GC_THRESHOLDS = (50_000, 20, 100)


def run_worker(
    settings: Settings, loglevel: str = "info", agent_type: type[RecommendAgent] = RecommendAgent
) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if settings.embedded_kafka:
            bootstrap = stack.enter_context(EmbeddedBroker(settings.embedded_dir)).bootstrap
        triton_url = settings.triton_grpc_url
        if settings.embedded_triton:
            triton = stack.enter_context(EmbeddedTriton(settings.model_repository, settings.embedded_dir))
            triton_url = triton.grpc_url
        shape = check_model_ready(triton_url, settings.triton_model_name, timeout_s=60)
        log.info("model %s serves windows of %d events", settings.triton_model_name, shape.window)
        ensure_topics(bootstrap, settings)
        metrics = StreamMetrics.create()
        port = serve_metrics(metrics, settings.metrics_host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
        app = create_app(
            settings, bootstrap=bootstrap, triton_grpc_url=triton_url, metrics=metrics, agent_type=agent_type
        )
        worker = faust.Worker(app, loglevel=loglevel, quiet=True)
        worker.spinner = None  # a terminal spinner only garbles logs collected by a supervisor
        worker.execute_from_commandline()
