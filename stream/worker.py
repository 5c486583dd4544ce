"""Run one stream worker: checks, topics, the Faust app and its agent, the HTTP endpoint
(metrics and probes) and the monitor beside the app.

The worker needs the addresses of an existing broker and Triton; it never starts servers.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from typing import Any

import faust

from stream.admin import ensure_topics
from stream.agents import RecommendAgent
from stream.app import StreamApp, create_app
from stream.endpoint import serve_metrics
from stream.inference import check_model_ready
from stream.log_format import LogFormat, format_startup_logs, logging_config
from stream.metrics import StreamMetrics
from stream.settings import Settings, SettingsError
from stream.shutdown import ShutdownDeadline
from stream.triton_security import TritonSecurity

__all__ = ["GC_THRESHOLDS", "prepare_worker", "run_app", "run_worker"]

log = logging.getLogger(__name__)

# The worker's garbage goes by reference counting; with CPython's default thresholds
# (700, 10, 10) full collections ran every few thousand events, stopping the event loop for
# tens of milliseconds while freeing almost nothing: they made the stream's tail latency.
# Young collections now come every 50,000 allocations, full ones rarely.
GC_THRESHOLDS = (50_000, 20, 100)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """The production worker: runs until SIGTERM, finishing its batch in flight."""
    format_startup_logs(settings.log_format)
    parts = prepare_worker(settings)
    RecommendAgent(parts, settings).attach()
    run_app(parts, loglevel, ShutdownDeadline(settings.shutdown_timeout_s), log_format=settings.log_format)


def prepare_worker(settings: Settings) -> StreamApp:
    """Everything but the agent: fail fast on what would stop the worker later (no address, no
    model, a published top-k the model does not serve), then create the topics, build the app
    and start its HTTP endpoint."""
    settings.require_addresses()
    if settings.table_store.startswith("rocksdb") and importlib.util.find_spec("rocksdict") is None:
        raise SettingsError(
            "NEXTACTION_TABLE_STORE=rocksdb:// needs the rocksdict package: pip install 'nextaction[disk]'"
        )
    gc.set_threshold(*GC_THRESHOLDS)
    shape = check_model_ready(
        settings.triton_grpc_url,
        settings.triton_model_name,
        timeout_s=settings.triton_ready_timeout_s,
        security=TritonSecurity.from_settings(settings),
    )
    if settings.published_top_k > shape.served_top_k:
        raise SettingsError(
            f"NEXTACTION_PUBLISHED_TOP_K={settings.published_top_k} exceeds the {shape.served_top_k} items "
            f"model {settings.triton_model_name!r} serves: lower it, or export the model with "
            f"`nextaction export --served-top-k {settings.published_top_k}`"
        )
    log.info(
        "model %s serves %d items for windows of %d events; publishing the top %d",
        settings.triton_model_name,
        shape.served_top_k,
        shape.window,
        settings.published_top_k,
    )
    ensure_topics(settings.kafka_bootstrap, settings)
    parts = create_app(settings, StreamMetrics.create())
    try:
        port = serve_metrics(
            parts.metrics.registry, parts.health, settings.metrics_host, settings.metrics_port
        )
    except OSError as exc:
        raise SettingsError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({exc}): set "
            "NEXTACTION_METRICS_PORT to a free port (0 picks one), one per worker on a host"
        ) from None
    log.info("metrics on http://%s:%d/metrics, probes on /livez and /readyz", settings.metrics_host, port)
    return parts


class _Worker(faust.Worker):
    """A Faust worker whose stop, however it begins, ends by ``deadline``."""

    def __init__(self, *args: Any, deadline: ShutdownDeadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    async def on_stop(self) -> None:
        self._deadline.start()
        await super().on_stop()


def run_app(
    parts: StreamApp, loglevel: str, deadline: ShutdownDeadline, *, log_format: LogFormat = "text"
) -> None:
    """Run the app as a Faust worker in this process until it is stopped; WorkerFailed if it
    stopped because a batch failed."""
    worker = _Worker(
        parts.app,
        parts.monitor(),
        loglevel=loglevel,
        quiet=True,
        deadline=deadline,
        logging_config=logging_config(log_format),
    )
    worker.spinner = None  # a terminal spinner only garbles logs collected by a supervisor
    try:
        worker.execute_from_commandline()
    except SystemExit:
        parts.failure.raise_if_failed()
        raise
