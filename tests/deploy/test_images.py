"""The container images, read from their Dockerfiles (no Docker engine here): sources that exist
and reach the build context, pinned bases, a worker without torch, the real command, port and
health endpoint, a non-root user."""

from __future__ import annotations

import http.server
import importlib.util
import re
import shlex
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
from deploy_checks import DEPLOY, ROOT, image_pin_problem, setting_default, settings_problems

from cli.main import build_parser

pytestmark = pytest.mark.unit

DOCKER = DEPLOY / "docker"
WORKER = DOCKER / "worker.Dockerfile"
IMAGES = sorted(DOCKER.glob("*.Dockerfile"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [
        (keyword.upper(), arguments.strip())
        for line in logical.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
        for keyword, _, arguments in [line.strip().partition(" ")]
    ]


def arguments_of(dockerfile: Path, keyword: str) -> list[str]:
    return [arguments for found, arguments in instructions(dockerfile) if found == keyword]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array argument (ENTRYPOINT, CMD) as its words."""
    assert arguments.startswith("["), f"{arguments}: use the exec form, so signals reach the process"
    return [word.strip().strip('"') for word in arguments.strip("[]").split(",")]


def copy_sources(dockerfile: Path) -> Iterator[str]:
    """Sources of COPY/ADD from the build context (not from another stage)."""
    for keyword, arguments in instructions(dockerfile):
        if keyword in {"COPY", "ADD"}:
            words = shlex.split(arguments)
            if any(word.startswith("--from=") for word in words):
                continue
            yield from [word for word in words if not word.startswith("--")][:-1]


def test_there_is_a_worker_image_and_it_is_not_the_only_one_checked() -> None:
    assert WORKER in IMAGES


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda path: path.name)
def test_every_copied_source_exists_in_the_repository(dockerfile: Path) -> None:
    sources = list(copy_sources(dockerfile))
    assert sources
    assert [source for source in sources if not (ROOT / source).exists()] == []


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda path: path.name)
def test_every_copied_source_reaches_the_build_context(dockerfile: Path) -> None:
    """.dockerignore excludes everything and lets back in what the images copy: a source it does
    not let back in would fail the build with "not found"."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*"
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    missing = [
        source
        for source in copy_sources(dockerfile)
        if not any(source.rstrip("/") == entry or source.startswith(entry + "/") for entry in allowed)
    ]
    assert missing == []


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda path: path.name)
def test_base_images_are_exact_releases(dockerfile: Path) -> None:
    bases = [shlex.split(arguments)[0] for arguments in arguments_of(dockerfile, "FROM")]
    assert bases
    assert [problem for base in bases if (problem := image_pin_problem(base))] == []


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda path: path.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    (user,) = arguments_of(dockerfile, "USER")[-1:]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0


def test_the_worker_image_installs_the_base_package_and_no_model_library() -> None:
    installs = [run for run in arguments_of(WORKER, "RUN") if "pip install" in run]
    assert installs
    for run in installs:
        assert "[" not in run, f"{run}: the worker installs no extra"
        assert not re.search(r"\b(torch|transformers|onnx\w*)\b", run), run


def test_the_model_image_pins_the_torch_of_the_model_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["model"]
    (torch,) = [requirement for requirement in extra if requirement.startswith("torch")]
    runs = " ".join(arguments_of(DOCKER / "model.Dockerfile", "RUN"))
    assert torch in runs.split()


def test_the_worker_image_runs_the_worker_command() -> None:
    (entrypoint,) = arguments_of(WORKER, "ENTRYPOINT")
    program, *command = exec_form(entrypoint)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts
    # Parsing fails (SystemExit) on a subcommand the CLI does not have.
    assert build_parser().parse_args(command).command == "worker"


def test_the_worker_image_exposes_the_metrics_port_and_sets_real_settings() -> None:
    assert arguments_of(WORKER, "EXPOSE") == [str(setting_default("metrics_port"))]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(arguments_of(WORKER, "ENV"))))
    assert settings_problems(env) == []
    # Reachable from outside the container, on the port it exposes.
    assert env["NEXTACTION_METRICS_HOST"] == "0.0.0.0"
    assert (
        env.get("NEXTACTION_METRICS_PORT", str(setting_default("metrics_port")))
        == arguments_of(WORKER, "EXPOSE")[0]
    )


def test_the_worker_health_check_asks_the_liveness_endpoint() -> None:
    (healthcheck,) = arguments_of(WORKER, "HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    words = exec_form(command)
    script = next(word for word in words if word.endswith("healthcheck.py"))
    assert "deploy/docker/healthcheck.py" in " ".join(arguments_of(WORKER, "COPY"))
    assert script.startswith("/") and words[-1] == "/livez"


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Worker(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {"/livez": 200, "/readyz": 503}

    def do_GET(self) -> None:
        self.send_response(self.statuses.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_health_check_script_passes_on_200_only() -> None:
    healthy = _load_healthcheck().healthy
    server = http.server.HTTPServer(("127.0.0.1", 0), _Worker)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        port = server.server_address[1]
        assert healthy("/livez", port)
        assert not healthy("/readyz", port)
        assert not healthy("/missing", port)
    finally:
        server.shutdown()
        server.server_close()
    assert not healthy("/livez", port, timeout_s=0.5)
