"""A real Prometheus server scraping a worker of the embedded pipeline and its Triton: the
scraped values are what the test produced, the probes answer, every alert rule evaluates, and
the Triton metric names that alerts and the dashboard use exist on the real tritonserver."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.triton_backend import ITEM_COUNTS_METRIC
from tests.doubles import http_get
from tools.embedded import EmbeddedTriton
from tools.embedded.ports import LOOPBACK, free_port
from tools.metrics_scrape import scrape
from tools.polling import wait_until
from tools.replay import event_message, invalid_samples

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
TS = 1_700_000_000_000


def triton_metric_names() -> set[str]:
    lines = (PROMETHEUS_DIR / "triton-metrics.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


class Prometheus:
    """``/usr/bin/prometheus`` on a free loopback port, scraping ``targets`` every second."""

    def __init__(self, directory: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs it (apt-get install prometheus)"
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [target]}]}
                        for job, target in targets.items()
                    ],
                }
            )
        )
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> object:
        url = f"http://{LOOPBACK}:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, query: str) -> float | None:
        """The single value of an instant query, None while it has no result."""
        try:
            result = self.api("query", query=query)
        except OSError:  # not listening yet
            return None
        assert isinstance(result, dict)
        samples = result["result"]
        return float(samples[0]["value"][1]) if samples else None

    def wait_value(self, query: str, expected: float, timeout_s: float = 60) -> None:
        def reached() -> bool | None:
            return self.value(query) == expected or None

        try:
            wait_until(reached, timeout_s=timeout_s, what=f"{query} == {expected}", interval_s=0.5)
        except TimeoutError:
            raise AssertionError(
                f"{query} is {self.value(query)}, not {expected}\n{self.log.read_text()[-3000:]}"
            ) from None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def window_items(triton: EmbeddedTriton, vocabulary: str) -> float:
    """Window items the model scored so far, known to its vocabulary or not, summed over versions."""
    return sum(
        value
        for name, value in scrape(triton.metrics_url).items()
        if name.startswith(f"{ITEM_COUNTS_METRIC}{{") and f'vocabulary="{vocabulary}"' in name
    )


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: dict[str, str]) -> Prometheus:
        server = Prometheus(tmp_path, targets)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_prometheus_scrapes_what_the_worker_did(
    worker_factory, triton_server: EmbeddedTriton, prometheus_for
) -> None:
    worker = worker_factory().start()
    worker.process.wait_assigned()
    user = "u-observed"
    valid = [
        event_message(
            {
                "event_id": f"e{i}",
                "user_id": user,
                "item_id": f"i{i}",
                "action": "view",
                "ts": 1_700_000_000_000 + i,
            }
        )
        for i in range(5)
    ]
    invalid = invalid_samples(user)[:2]
    # Items no model version knows: Triton's own metrics count them (the retrain signal).
    unseen = [
        event_message(
            {
                "event_id": f"n{i}",
                "user_id": "u-new-items",
                "item_id": f"never-seen-{i}",
                "action": "view",
                "ts": 1_700_000_000_000 + i,
            }
        )
        for i in range(3)
    ]
    unknown_before = window_items(triton_server, "unknown")
    worker.produce(valid + invalid + unseen)
    metrics = worker.wait_acknowledged(len(valid) + len(invalid) + len(unseen))
    # The user's last window holds all three, whatever batches they were scored in.
    assert window_items(triton_server, "unknown") - unknown_before >= len(unseen)
    assert window_items(triton_server, "known") > 0
    published = metrics["nextaction_recommendations_published_total"]
    assert published >= 1

    base = f"http://{LOOPBACK}:{worker.process.metrics_port}"
    assert http_get(f"{base}/livez") == (200, "live\n")
    assert http_get(f"{base}/readyz") == (200, "ready: 1 partitions\n")

    prometheus = prometheus_for(
        {
            "nextaction-worker": f"{LOOPBACK}:{worker.process.metrics_port}",
            "triton": f"{LOOPBACK}:{triton_server.metrics_port}",
        }
    )
    prometheus.wait_value("nextaction_events_consumed_total", len(valid) + len(invalid) + len(unseen))
    prometheus.wait_value("nextaction_recommendations_published_total", published)
    prometheus.wait_value("sum(nextaction_events_invalid_total)", len(invalid))
    prometheus.wait_value("nextaction_ready", 1)
    prometheus.wait_value('up{job="nextaction-worker"}', 1)
    prometheus.wait_value("nextaction_consumer_lag_records", 0)
    prometheus.wait_value("nextaction_oldest_unacknowledged_age_seconds", 0)
    prometheus.wait_value('count(nextaction_model_info{name="nextaction"})', 1)
    assert prometheus.value("time() - nextaction_last_publication_timestamp_seconds") < 300

    # Every rule evaluates against the real series without an error.
    def evaluated() -> list[dict[str, object]] | None:
        data = prometheus.api("rules")
        assert isinstance(data, dict)
        rules = [rule for group in data["groups"] for rule in group["rules"]]
        return (
            rules
            if rules and all(rule.get("lastEvaluation", "0001").startswith("20") for rule in rules)
            else None
        )

    rules = wait_until(evaluated, timeout_s=30, what="every alert rule evaluated", interval_s=0.5)
    assert {rule["name"]: rule["health"] for rule in rules} == {rule["name"]: "ok" for rule in rules}
    # A healthy pipeline fires nothing. A rule evaluated before the first scrape may still be
    # pending (no worker seen yet); its next evaluation, with the worker scraped, clears it.

    def quiet() -> bool:
        data = prometheus.api("rules")
        assert isinstance(data, dict)
        return all(rule["state"] == "inactive" for group in data["groups"] for rule in group["rules"])

    wait_until(quiet, timeout_s=30, what="no alert pending or firing", interval_s=0.5)

    # The Triton names alerts and the dashboard use, on the real server that just scored.
    # prometheus_client's parser names a counter's samples with "_total", Triton's never do.
    exported = {name.split("{")[0].removesuffix("_total") for name in scrape(triton_server.metrics_url)}
    assert {name.removesuffix("_total") for name in triton_metric_names()} - exported == set()
