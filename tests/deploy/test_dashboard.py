"""The Grafana dashboard: every query names only metrics the worker or Triton exports, and its
datasource is the provisioned one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import ROOT, known_metric_names, promql_metric_names

pytestmark = pytest.mark.unit

GRAFANA_DIR = ROOT / "deploy" / "grafana"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA_DIR / "dashboards" / "nextaction.json").read_text())
    return loaded


def targets() -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target


def test_every_query_names_only_exported_metrics() -> None:
    known = known_metric_names()
    unknown = {
        f"{title} {target['refId']}": promql_metric_names(target["expr"]) - known
        for title, target in targets()
    }
    assert {query: names for query, names in unknown.items() if names} == {}
    assert all(promql_metric_names(target["expr"]) for _, target in targets())


def test_panels_and_queries_use_the_provisioned_datasource() -> None:
    datasources = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
    provisioned = yaml.safe_load(datasources.read_text())
    (source,) = provisioned["datasources"]
    expected = {"type": "prometheus", "uid": source["uid"]}
    assert all(panel["datasource"] == expected for panel in dashboard()["panels"])
    assert all(target["datasource"] == expected for _, target in targets())


def test_the_dashboard_provider_loads_json_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "nextaction.yml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"
    board = dashboard()
    assert board["uid"] == "nextaction" and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
