"""deploy/compose.yaml, checked without a Docker engine: the Compose Specification's schema, host
paths, real settings, ports that agree with the settings and the servers, pinned images, and
the Prometheus and Grafana files it mounts."""

from __future__ import annotations

import json
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from deploy_checks import (
    DEPLOY,
    ROOT,
    effective_setting,
    image_pin_problem,
    load_yaml,
    schema_errors,
    settings_problems,
)

pytestmark = pytest.mark.unit

COMPOSE_FILE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: str(value) for name, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts; named volumes are skipped."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((source, target))
    return mounts


def mounted_at(service: dict[str, Any], container_path: str) -> Path:
    """The repository path bind-mounted at ``container_path``."""
    (source,) = [source for source, target in bind_mounts(service) if target == container_path]
    return (DEPLOY / source).resolve()


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    # check-jsonschema vendors the Compose Specification's schema: no network needed.
    schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    assert schema_errors(jsonschema.Draft202012Validator(schema), compose) == []


def test_every_bind_mounted_host_path_and_build_file_exists(services: dict[str, Any]) -> None:
    paths = [source for service in services.values() for source, _ in bind_mounts(service)]
    for service in services.values():
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            paths += [service["build"]["context"], str(context / service["build"]["dockerfile"])]
    # The Prometheus and Grafana files must be among them: compose is how they are tried out.
    expected = {
        "prometheus/prometheus.yml",
        "prometheus/alerts.yml",
        "grafana/provisioning",
        "grafana/dashboards",
    }
    assert expected <= {str(Path(path)) for path in paths}
    assert [path for path in paths if not (DEPLOY / path).exists()] == []


def test_every_nextaction_variable_is_a_setting_with_a_valid_value(services: dict[str, Any]) -> None:
    variables = [environment(service) for service in services.values()]
    assert any(name.startswith("NEXTACTION_") for env in variables for name in env)
    assert [problem for env in variables for problem in settings_problems(env)] == []


def test_images_are_pinned_to_exact_releases(services: dict[str, Any]) -> None:
    images = [service["image"] for service in services.values()]
    assert len(images) == len(services), "every service names its image (built ones: their tag)"
    assert [problem for image in images if (problem := image_pin_problem(image))] == []


def test_built_images_are_tagged_with_the_package_version(services: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = [service["image"] for service in services.values() if "build" in service]
    assert built and all(image.endswith(f":{version}") for image in built)


def test_workers_reach_kafka_and_triton_where_they_listen(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    host, _, port = effective_setting(env, "kafka_bootstrap").partition(":")
    assert host in services
    assert f"://{host}:{port}" in environment(services[host])["KAFKA_ADVERTISED_LISTENERS"]
    host, _, port = effective_setting(env, "triton_grpc_url").partition(":")
    assert host == "triton" and port == "8001"
    assert any(published.endswith(":8001") for published in services["triton"]["ports"])


def test_workers_serve_metrics_where_the_image_and_prometheus_expect(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    assert effective_setting(env, "metrics_host") == "0.0.0.0"
    assert effective_setting(env, "metrics_port") == 9108
    # Several workers on one host: no fixed host port, which only one of them could bind.
    assert "ports" not in services["worker"]
    assert services["worker"]["deploy"]["replicas"] >= 1


def test_workers_get_the_time_to_finish_their_batch_and_are_restarted(services: dict[str, Any]) -> None:
    worker = services["worker"]
    grace_s = int(worker["stop_grace_period"].removesuffix("s"))
    assert grace_s > effective_setting(environment(worker), "shutdown_timeout_s")
    assert worker["restart"] in {"on-failure", "unless-stopped", "always"}


def test_triton_serves_the_mounted_repository_on_a_gpu(services: dict[str, Any]) -> None:
    triton = services["triton"]
    command = triton["command"]
    assert "--model-config-name=gpu" in command
    (repository,) = [arg.partition("=")[2] for arg in command if arg.startswith("--model-repository=")]
    assert mounted_at(triton, repository) == ROOT / "model_repository"
    assert (ROOT / "model_repository" / "nextaction" / "configs" / "gpu.pbtxt").is_file()
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    assert {port.rpartition(":")[2] for port in triton["ports"]} == {"8000", "8001", "8002"}
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert "127.0.0.1/8000" in " ".join(triton["healthcheck"]["test"])


def test_workers_start_after_kafka_and_triton_are_healthy(services: dict[str, Any]) -> None:
    depends = services["worker"]["depends_on"]
    assert {name: depends[name]["condition"] for name in ("kafka", "triton")} == {
        "kafka": "service_healthy",
        "triton": "service_healthy",
    }
    assert all("healthcheck" in services[name] for name in ("kafka", "triton"))


def _scrape_targets(prometheus: dict[str, Any]) -> dict[str, list[str]]:
    """Per job: host:port of its static targets and DNS names (name:port)."""
    targets: dict[str, list[str]] = {}
    for job in prometheus["scrape_configs"]:
        found = targets.setdefault(job["job_name"], [])
        for static in job.get("static_configs", []):
            found += static["targets"]
        for dns in job.get("dns_sd_configs", []):
            found += [f"{name}:{dns['port']}" for name in dns["names"]]
    return targets


def test_prometheus_scrapes_every_worker_and_triton_by_service_name(services: dict[str, Any]) -> None:
    prometheus = load_yaml(mounted_at(services["prometheus"], "/etc/prometheus/prometheus.yml"))
    targets = {target for job in _scrape_targets(prometheus).values() for target in job}
    assert "triton:8002" in targets
    assert f"worker:{effective_setting(environment(services['worker']), 'metrics_port')}" in targets
    # Every replica, not whichever one the service name resolves to first.
    worker_jobs = [job for job in prometheus["scrape_configs"] if "worker" in json.dumps(job)]
    assert any("dns_sd_configs" in job for job in worker_jobs)


def test_prometheus_loads_the_mounted_alert_rules(services: dict[str, Any]) -> None:
    prometheus_service = services["prometheus"]
    config = load_yaml(mounted_at(prometheus_service, "/etc/prometheus/prometheus.yml"))
    rule_files = [str(Path("/etc/prometheus") / name) for name in config.get("rule_files", [])]
    assert "/etc/prometheus/alerts.yml" in rule_files
    assert (
        mounted_at(prometheus_service, "/etc/prometheus/alerts.yml") == DEPLOY / "prometheus" / "alerts.yml"
    )


def test_grafana_reads_the_mounted_dashboards_from_prometheus(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    provisioning = mounted_at(grafana, "/etc/grafana/provisioning")
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert any(source.get("url", "").startswith("http://prometheus:9090") for source in datasources)
    providers = load_yaml(provisioning / "dashboards" / "nextaction.yml")["providers"]
    paths = {provider["options"]["path"] for provider in providers}
    (dashboards,) = [target for source, target in bind_mounts(grafana) if target in paths]
    assert (mounted_at(grafana, dashboards) / "nextaction.json").is_file()
