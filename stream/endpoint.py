"""The worker's HTTP endpoint: ``/metrics`` for Prometheus, ``/livez`` and ``/readyz`` for
the orchestrator (:mod:`stream.health` says what they mean), served from a daemon thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from stream.health import Health, Verdict

__all__ = ["serve_metrics"]

_StartResponse = Callable[..., Any]
_WSGIApp = Callable[[dict[str, Any], _StartResponse], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    # A probe or scrape in progress never holds the worker's exit.
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6  # the default IPv4 socket cannot bind an IPv6 host (``::``)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would drown the worker's log."""


def endpoint_app(registry: CollectorRegistry, health: Health) -> _WSGIApp:
    metrics = make_wsgi_app(registry)
    probes: dict[str, Callable[[], Verdict]] = {"/livez": health.live, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        probe = probes.get(path)
        if probe is None:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: /metrics, /livez or /readyz\n"]
        verdict = probe()
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{verdict.reason}\n".encode()]

    return app


def serve_metrics(registry: CollectorRegistry, health: Health, host: str, port: int) -> int:
    """Serve /metrics, /livez and /readyz on ``host:port`` in a daemon thread; returns the
    bound port (``port`` 0 picks a free one). OSError if the address cannot be bound."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = _Server6 if family == socket.AF_INET6 else _Server
    server = make_server(
        host, port, endpoint_app(registry, health), server_class=server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="nextaction-endpoint", daemon=True).start()
    return int(server.server_port)
