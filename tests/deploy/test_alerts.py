"""The alert rules: promtool accepts them and the scrape configuration, their unit tests pass,
and every metric they name is one the worker or Triton exports."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.metric_names import PROMETHEUS_DIR, known_metric_names, promql_metric_names

pytestmark = pytest.mark.unit


def promtool(*arguments: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make test` installs it (apt-get install prometheus)"
    done = subprocess.run(
        [binary, *arguments], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_the_scrape_configuration() -> None:
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_the_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_duration_a_severity_and_a_runbook() -> None:
    for rule in rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]  # type: ignore[index]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and {"summary", "description", "runbook"} <= annotations.keys()


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules():
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == rule["alert"]}
        assert outcomes == {True, False}, rule["alert"]


def test_every_metric_the_alerts_name_is_exported() -> None:
    known = known_metric_names()
    unknown = {rule["alert"]: promql_metric_names(str(rule["expr"])) - known for rule in rules()}
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_the_name_extraction_sees_metrics_and_nothing_else() -> None:
    expr = 'sum by (instance, le) (rate(a_bucket{job="x", le!="0.5"}[5m])) / on(instance) b > 0.1 and up == 1'
    assert promql_metric_names(expr) == {"a_bucket", "b", "up"}
