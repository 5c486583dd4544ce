"""A stand-in for ``nextaction worker`` whose metrics endpoint opens late, as a real worker's
does while it checks Triton and creates topics: ``python -m late_metrics_worker worker``."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if __name__ == "__main__":
    time.sleep(float(os.environ["LATE_METRICS_DELAY_S"]))
    registry = CollectorRegistry()
    Counter("nextaction_events_acknowledged", "", registry=registry)
    Gauge("nextaction_assigned_partitions", "", registry=registry).set(1)
    start_http_server(int(os.environ["NEXTACTION_METRICS_PORT"]), addr="127.0.0.1", registry=registry)
    time.sleep(60)
