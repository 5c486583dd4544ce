"""What the deployment tests share: the repository's paths, YAML loading, and the checks that
compose, the Kubernetes manifests and the Dockerfiles make alike (settings, image tags, schemas)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from stream.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
CRDS = Path(__file__).resolve().parent / "crds"

# An exact release: 3.11.14-slim-bookworm, v3.5.0, 3.9.1, 24.10-py3, 0.1.0. Not `latest`, not a
# bare major (`3`, `3.11`) that moves with every release; a digest pins it better still.
_EXACT_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?(-[A-Za-z0-9.]+)*$")
_PATCH_LEVEL_TAG = re.compile(r"^v?\d+\.\d+\.\d+(-[A-Za-z0-9.]+)*$")
# NVIDIA's containers are versioned by release month (24.10), which is exact.
_MONTHLY_RELEASE_IMAGES = ("nvcr.io/nvidia/",)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_documents(path: Path) -> list[dict[str, Any]]:
    return yaml_documents(path.read_text())


def yaml_documents(text: str) -> list[Any]:
    return [document for document in yaml.safe_load_all(text) if document]


def image_pin_problem(image: str) -> str | None:
    """Why ``image`` is not pinned to one release, or None when it is."""
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return f"{image}: no tag"
    exact = _EXACT_TAG if image.startswith(_MONTHLY_RELEASE_IMAGES) else _PATCH_LEVEL_TAG
    if not exact.match(tag):
        return f"{image}: tag {tag!r} is not an exact release"
    return None


def settings_problems(variables: Mapping[str, object]) -> list[str]:
    """The NEXTACTION_* variables among ``variables`` that the worker would refuse: names that
    are no setting, or values a setting rejects."""
    fields = {}
    problems = []
    for name, value in variables.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        if field not in Settings.model_fields:
            problems.append(f"{name}: no such setting")
        else:
            fields[field] = str(value)
    if not problems:
        try:
            Settings(**fields)  # type: ignore[arg-type]
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def setting_default(field: str) -> Any:
    return Settings.model_fields[field].default


def effective_setting(variables: Mapping[str, object], field: str) -> Any:
    """A setting's value in a container whose environment is ``variables``: parsed, or the default."""
    name = ENV_PREFIX + field.upper()
    if name not in variables:
        return setting_default(field)
    return getattr(Settings(**{field: str(variables[name])}), field)  # type: ignore[arg-type]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize's configMapGenerator reads them."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


@cache
def crd_validator(crd_file: str, api_version: str) -> jsonschema.protocols.Validator:
    """A validator of the CRD's schema for ``api_version``, made strict the way the API server
    is lenient: a field the schema does not declare would be pruned silently there, so here it
    is an error (a misspelt field fails the test instead of vanishing)."""
    crd = load_yaml(CRDS / crd_file)
    version = api_version.rpartition("/")[2]
    (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(_no_unknown_fields(copy.deepcopy(schema)))


def _no_unknown_fields(schema: Any) -> Any:
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _no_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            _no_unknown_fields(value)
    return schema


def schema_errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
