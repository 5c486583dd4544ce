"""The embedded Triton Inference Server: the real ``tritonserver`` from the nvidia-pytriton wheel.

The wheel ships the server with the Python backend only. Models run in the Python backend
stub, which must match this interpreter and import the project's packages.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from tools.embedded.cache import materialize
from tools.embedded.ports import LOOPBACK, free_ports
from tools.embedded.process import EmbeddedServer, EmbeddedServerError, ServerProcess

__all__ = ["EmbeddedTriton"]

_INSTALL_HINT: Final = "pip install 'nvidia-pytriton==0.7.0' (its wheel ships tritonserver)"
_PY_VERSION: Final = f"{sys.version_info.major}.{sys.version_info.minor}"
_STUB: Final = "triton_python_backend_stub"


class EmbeddedTriton(EmbeddedServer):
    """``tritonserver`` serving ``model_repository`` on free 127.0.0.1 HTTP/gRPC/metrics ports.

    The repository is polled every ``repository_poll_s`` seconds, so a new model version
    written into it rolls out without a restart. The server tree is copied once to
    ``embedded_dir`` (the stub must sit in ``backends/python/``); the log is
    ``embedded_dir/logs/tritonserver-<grpc port>.log``.
    """

    def __init__(
        self,
        model_repository: Path,
        embedded_dir: Path,
        *,
        repository_poll_s: int = 2,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.model_repository = model_repository
        self.embedded_dir = embedded_dir
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self._repository_poll_s = repository_poll_s
        self._start_timeout_s = start_timeout_s

    @property
    def grpc_url(self) -> str:
        """``host:port``, as ``tritonclient.grpc`` takes it."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``host:port``, as ``tritonclient.http`` takes it."""
        return f"{LOOPBACK}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus scrape URL."""
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def wait_for_model(self, name: str, version: int | None = None, timeout_s: float = 60.0) -> None:
        """Block until the model (a given version, or any) is ready; load errors show the log."""
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "")
        what = f"serving model {name!r}" + (f" version {version}" if version is not None else "")
        self.process.wait_until(lambda: self._http_ok(f"{path}/ready"), what, timeout_s)

    def _new_process(self) -> ServerProcess:
        if not self.model_repository.is_dir():
            raise EmbeddedServerError(f"model repository {self.model_repository} is not a directory")
        package = _pytriton_dir()
        tree = _server_tree(package, self.embedded_dir)
        # The backend stub writes model.py's bytecode into the version directory when it first
        # loads a model (it ignores PYTHONDONTWRITEBYTECODE); the repository poller takes that
        # write for a changed model and loads it all over again. Compiling first avoids this.
        # Syntax errors are left for the server to report when it loads the model.
        compileall.compile_dir(self.model_repository, quiet=2)
        argv = [
            str(tree / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository.resolve()}",
            f"--backend-directory={tree / 'backends'}",
            f"--cache-directory={tree / 'caches'}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--model-control-mode=poll",
            f"--repository-poll-secs={self._repository_poll_s}",
        ]
        return ServerProcess(
            "tritonserver",
            argv,
            log_path=self.embedded_dir / "logs" / f"tritonserver-{self.grpc_port}.log",
            ready=lambda: self._http_ok("/v2/health/ready"),
            env=_server_env(package),
            start_timeout_s=self._start_timeout_s,
        )

    def kill(self) -> None:
        """SIGKILL, then remove the shared memory the server's Python backend left behind."""
        super().kill()
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)

    @property
    def _shm_prefix(self) -> str:
        """The Python backend's shared-memory regions of this server: its own, to clean up."""
        return f"nextaction_triton_{self.grpc_port}_"

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            # Not listening yet, or answering "not ready" (HTTP 400).
            return False


def _pytriton_dir() -> Path:
    # find_spec locates the package without importing it (pytriton's import is heavy).
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(f"the embedded Triton needs nvidia-pytriton: {_INSTALL_HINT}")
    package = Path(next(iter(spec.submodule_search_locations)))
    if not (package / "tritonserver" / "bin" / "tritonserver").is_file():
        raise EmbeddedServerError(f"no tritonserver binary under {package}: {_INSTALL_HINT}")
    return package


def _server_tree(package: Path, embedded_dir: Path) -> Path:
    """A writable copy of the packaged server tree with this interpreter's backend stub."""
    source = package / "tritonserver"
    stub = source / "python_backend_stubs" / _PY_VERSION / _STUB
    if not stub.is_file():
        raise EmbeddedServerError(f"nvidia-pytriton has no Python backend stub for {_PY_VERSION}")

    def copy_tree(dest: Path) -> None:
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
        shutil.copy2(stub, dest / "backends" / "python" / _STUB)

    pytriton_version = importlib.metadata.version("nvidia-pytriton")
    name = f"tritonserver-pytriton{pytriton_version}-py{_PY_VERSION}"
    return materialize(embedded_dir / name, copy_tree)


def _server_env(package: Path) -> dict[str, str]:
    """What the server and its Python backend stub need on top of the inherited environment."""
    libs = package.parent / "nvidia_pytriton.libs"
    # The stub links libpython; without the interpreter's own LIBDIR first it may load a
    # mismatched system libpython.
    libdir = Path(sysconfig.get_config_var("LIBDIR"))
    libpython = sysconfig.get_config_var("INSTSONAME")
    if not (libdir / libpython).is_file():
        raise EmbeddedServerError(
            f"the Python backend stub needs {libdir / libpython}: use a Python built with "
            "--enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    return {
        "LD_LIBRARY_PATH": _prepend([libs, libdir], os.environ.get("LD_LIBRARY_PATH")),
        # The stub finds the model's packages (onnxruntime, the project) through python3 on
        # PATH, so this interpreter's bin directory (the virtualenv's) must come first.
        "PATH": _prepend([Path(sys.executable).parent], os.environ.get("PATH", os.defpath)),
        # Models run several intra-op threads per instance by default; on few cores that
        # oversubscribes them, and latency under load grows many times over.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }


def _prepend(entries: Iterable[Path], existing: str | None) -> str:
    return os.pathsep.join([*map(str, entries), *([existing] if existing else [])])
