"""The kustomize base, checked without a cluster: core objects against Kubernetes' schemas
(kubernetes-validate), KEDA and Prometheus Operator objects against their CRDs (tests/deploy/crds),
and what the objects must agree on with the worker, its settings, Triton and each other."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from deploy_checks import (
    DEPLOY,
    K8S_BASE,
    crd_validator,
    effective_setting,
    image_pin_problem,
    load_documents,
    load_yaml,
    read_env_file,
    schema_errors,
    setting_default,
    settings_problems,
    yaml_documents,
)

from tools.prometheus_rule import ALERTS_PATH, RULE_PATH, render_prometheus_rule

pytestmark = pytest.mark.unit

KUBERNETES_VERSION = "1.34"
# apiVersion/kind -> the vendored CRD whose schema validates it.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
WORKER_PORT_NAME = "metrics"


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return load_yaml(K8S_BASE / "kustomization.yaml")


@pytest.fixture(scope="module")
def objects(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    # A missing file fails test_every_file_the_kustomization_names_exists, not every test here.
    present = [K8S_BASE / name for name in kustomization["resources"] if (K8S_BASE / name).is_file()]
    return [document for path in present for document in load_documents(path)]


@pytest.fixture(scope="module")
def worker_env(kustomization: dict[str, Any]) -> dict[str, str]:
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "nextaction-worker"]
    return {key: value for name in generator["envs"] for key, value in read_env_file(K8S_BASE / name).items()}


def custom_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    return crd_validator(CUSTOM_KINDS[api_version, kind], api_version)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def port_number(container_: dict[str, Any], port: int | str) -> int:
    """A probe's or service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container_["ports"] if p["name"] == port]
    return int(number)


def test_every_file_the_kustomization_names_exists(kustomization: dict[str, Any]) -> None:
    names = list(kustomization["resources"])
    names += [env for generator in kustomization.get("configMapGenerator", []) for env in generator["envs"]]
    assert "prometheus-rule.yaml" in names
    assert [name for name in names if not (K8S_BASE / name).is_file()] == []


def test_the_base_holds_every_part_of_the_deployment(objects: list[dict[str, Any]]) -> None:
    kinds = sorted({o["kind"] for o in objects})
    expected = ["CronJob", "Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "PrometheusRule"]
    expected += ["ScaledObject", "Service", "ServiceMonitor"]
    assert kinds == expected
    assert all("namespace" not in o["metadata"] for o in objects), "the base is namespace-agnostic"


def test_core_objects_follow_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    core = [o for o in objects if (o["apiVersion"], o["kind"]) not in CUSTOM_KINDS]
    assert core
    problems = []
    for document in core:
        try:
            # strict: a field Kubernetes does not know is an error, not silently dropped.
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{document['kind']}/{document['metadata']['name']}: {exc.message}")
    assert problems == []


def test_custom_objects_follow_their_crds(objects: list[dict[str, Any]]) -> None:
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS]
    assert {(o["apiVersion"], o["kind"]) for o in custom} == set(CUSTOM_KINDS)
    problems = [
        f"{o['kind']}/{o['metadata']['name']}: {error}"
        for o in custom
        for error in schema_errors(
            crd_validator(CUSTOM_KINDS[o["apiVersion"], o["kind"]], o["apiVersion"]), o
        )
    ]
    assert problems == []


def test_the_crd_check_rejects_a_misspelt_field(objects: list[dict[str, Any]]) -> None:
    scaled = find(objects, "ScaledObject", "nextaction-worker")
    broken = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    validator = custom_validator("keda.sh/v1alpha1", "ScaledObject")
    assert schema_errors(validator, scaled) == []
    assert schema_errors(validator, broken) != []


def test_worker_settings_are_real_and_valid(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    assert settings_problems(worker_env) == []
    assert all(name.startswith("NEXTACTION_") for name in worker_env)
    worker = container(find(objects, "Deployment", "nextaction-worker"), "worker")
    assert settings_problems({e["name"]: e.get("value", "") for e in worker.get("env", [])}) == []
    assert {"configMapRef": {"name": "nextaction-worker"}} in worker["envFrom"]
    assert effective_setting(worker_env, "metrics_host") == "0.0.0.0"


def test_worker_probes_ask_its_health_endpoints(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    worker = container(find(objects, "Deployment", "nextaction-worker"), "worker")
    metrics_port = effective_setting(worker_env, "metrics_port")
    assert metrics_port == setting_default("metrics_port")
    probes = {kind: worker[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    assert {port_number(worker, probe["port"]) for probe in probes.values()} == {metrics_port}


def test_worker_runs_as_the_image_user_and_outlives_its_shutdown_timeout(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    pod = find(objects, "Deployment", "nextaction-worker")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert pod["terminationGracePeriodSeconds"] > effective_setting(worker_env, "shutdown_timeout_s")
    # The data directory is the one writable path a read-only root leaves the worker.
    worker = container(find(objects, "Deployment", "nextaction-worker"), "worker")
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in worker["volumeMounts"]}
    assert str(effective_setting(worker_env, "data_dir")) in mounts


def test_worker_metrics_service_and_monitor_select_the_workers(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "nextaction-worker")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    worker = container(deployment, "worker")
    for kind, name, key in (
        ("Service", "nextaction-worker-metrics", "selector"),
        ("PodDisruptionBudget", "nextaction-worker", "selector"),
    ):
        selector = find(objects, kind, name)["spec"][key]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), f"{kind}/{name}"
    service = find(objects, "Service", "nextaction-worker-metrics")
    (port,) = service["spec"]["ports"]
    assert port_number(worker, port["targetPort"]) == setting_default("metrics_port")
    monitor = find(objects, "ServiceMonitor", "nextaction-worker")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == [port["name"]]


def test_scaled_object_follows_the_workers_group_on_the_events_topic(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    scaled = find(objects, "ScaledObject", "nextaction-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert find(objects, target.get("kind", "Deployment"), target["name"])["kind"] == "Deployment"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    # Faust's consumer group is the app id.
    assert metadata["consumerGroup"] == effective_setting(worker_env, "app_id") == setting_default("app_id")
    assert (
        metadata["topic"] == effective_setting(worker_env, "topic_events") == setting_default("topic_events")
    )
    assert metadata["bootstrapServersFromEnv"] in worker_env
    assert int(metadata["lagThreshold"]) > 10_000, "above what Faust leaves uncommitted between commits"


def test_workers_never_outnumber_the_partitions(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    spec = find(objects, "ScaledObject", "nextaction-worker")["spec"]
    partitions = effective_setting(worker_env, "topic_partitions")
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions


def test_triton_serves_the_gpu_configuration_from_the_model_volume(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "nextaction-triton")
    triton = container(deployment, "triton")
    args = triton["args"]
    assert "--model-config-name=gpu" in args
    (repository,) = [arg.partition("=")[2] for arg in args if arg.startswith("--model-repository=")]
    (mount,) = [m for m in triton["volumeMounts"] if m["mountPath"] == repository]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    find(objects, "PersistentVolumeClaim", claim)
    for bound in ("requests", "limits"):
        assert triton["resources"][bound]["nvidia.com/gpu"] == 1
    assert {port_number(triton, p["containerPort"]) for p in triton["ports"]} == {8000, 8001, 8002}
    probes = {kind: triton[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert {port_number(triton, probe["port"]) for probe in probes.values()} == {8000}


def _pod_spec(o: dict[str, Any]) -> dict[str, Any]:
    template = (
        o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" else o["spec"]["template"]
    )
    return template["spec"]


@pytest.mark.parametrize(
    ("kind", "name", "command"),
    [("CronJob", "nextaction-retrain", "retrain"), ("Deployment", "nextaction-catalogue", "catalogue")],
)
def test_model_jobs_write_the_repository_triton_serves(
    objects: list[dict[str, Any]], kind: str, name: str, command: str
) -> None:
    triton = find(objects, "Deployment", "nextaction-triton")
    (claim,) = [
        v["persistentVolumeClaim"]["claimName"]
        for v in _pod_spec(triton)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    spec = _pod_spec(find(objects, kind, name))
    (job,) = spec["containers"]
    assert job["args"][0] == command
    repository = job["args"][job["args"].index("--repository") + 1]
    (mount,) = [m for m in job["volumeMounts"] if m["mountPath"] == repository]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    assert {"configMapRef": {"name": "nextaction-worker"}} in job["envFrom"]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_one_catalogue_follower_at_a_time(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "nextaction-catalogue")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "--follow" in container(deployment, "catalogue")["args"]


def test_workers_reach_triton_through_its_service(
    worker_env: dict[str, str], objects: list[dict[str, Any]]
) -> None:
    host, _, port = effective_setting(worker_env, "triton_grpc_url").partition(":")
    service = find(objects, "Service", host)
    triton = container(find(objects, "Deployment", "nextaction-triton"), "triton")
    (grpc,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert port_number(triton, grpc["targetPort"]) == 8001
    monitor = find(objects, "ServiceMonitor", "nextaction-triton")
    (endpoint,) = monitor["spec"]["endpoints"]
    (metrics,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port_number(triton, metrics["targetPort"]) == 8002


def scrape_jobs(objects: list[dict[str, Any]]) -> set[str]:
    """Prometheus' job label of each Service a ServiceMonitor selects: the value of the Service's
    label named by jobLabel, or else the Service's name (the Prometheus Operator's rule)."""
    jobs = set()
    services = [o for o in objects if o["kind"] == "Service"]
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        for service in services:
            labels = service["metadata"].get("labels", {})
            if wanted <= labels.items():
                jobs.add(labels.get(monitor["spec"].get("jobLabel"), service["metadata"]["name"]))
    return jobs


def test_scrape_jobs_are_named_as_in_the_prometheus_config_and_the_alerts(
    objects: list[dict[str, Any]],
) -> None:
    configured = {
        job["job_name"] for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    }
    assert scrape_jobs(objects) == configured
    assert set(re.findall(r'job="([^"]+)"', ALERTS_PATH.read_text())) <= configured


def test_images_are_pinned_and_triton_matches_compose(objects: list[dict[str, Any]]) -> None:
    images = {
        o["metadata"]["name"]: c["image"]
        for o in objects
        if o["kind"] in ("Deployment", "CronJob")
        for c in _pod_spec(o)["containers"]
    }
    assert len(images) == 4
    assert [problem for image in images.values() if (problem := image_pin_problem(image))] == []
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]
    assert images["nextaction-retrain"] == images["nextaction-catalogue"] == compose["model"]["image"]
    assert (
        container(find(objects, "Deployment", "nextaction-triton"), "triton")["image"]
        == compose["triton"]["image"]
    )
    assert (
        container(find(objects, "Deployment", "nextaction-worker"), "worker")["image"]
        == compose["worker"]["image"]
    )


SAMPLE_ALERTS = """\
groups:
  - name: nextaction
    rules:
      - alert: NextactionWorkerDown
        expr: |
          up{job="nextaction-worker"} == 0
        for: 2m
        labels:
          severity: page
        annotations:
          summary: A worker stopped answering scrapes.
"""


def test_the_rendered_rule_is_a_valid_prometheus_rule_with_the_same_groups() -> None:
    rendered = render_prometheus_rule(SAMPLE_ALERTS)
    (rule,) = yaml_documents(rendered)
    assert rule["spec"]["groups"] == yaml_documents(SAMPLE_ALERTS)[0]["groups"]
    validator = crd_validator(
        CUSTOM_KINDS["monitoring.coreos.com/v1", "PrometheusRule"], "monitoring.coreos.com/v1"
    )
    assert schema_errors(validator, rule) == []
    with pytest.raises(ValueError):
        render_prometheus_rule("rules: []")


def test_the_committed_rule_is_rendered_from_the_alerts_file() -> None:
    assert ALERTS_PATH == DEPLOY / "prometheus" / "alerts.yml" and RULE_PATH.parent == K8S_BASE
    assert RULE_PATH.read_text() == render_prometheus_rule(ALERTS_PATH.read_text()), (
        "run: python -m tools.prometheus_rule"
    )
