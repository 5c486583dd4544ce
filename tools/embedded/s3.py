"""A local S3 endpoint (moto's server) holding one bucket: storage for a Tansu broker that
survives the broker's restart, which the memory storage does not."""

from __future__ import annotations

import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

from tools.embedded.ports import LOOPBACK, free_port
from tools.embedded.process import EmbeddedServer, EmbeddedServerError, ServerProcess

__all__ = ["EmbeddedS3"]

_INSTALL_HINT: Final = "pip install 'moto[server]>=5,<6'"
_REGION: Final = "us-east-1"


class EmbeddedS3(EmbeddedServer):
    """``moto_server`` on ``127.0.0.1:port`` with ``bucket`` created once it answers.

    ``env`` is what a client (Tansu's ``s3://`` storage engine) needs to reach it; the log is
    ``embedded_dir/logs/moto-<port>.log``.
    """

    def __init__(self, embedded_dir: Path, *, bucket: str = "tansu", start_timeout_s: float = 30.0) -> None:
        self.embedded_dir = embedded_dir
        self.bucket = bucket
        self.port = free_port()
        self._start_timeout_s = start_timeout_s

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def storage_url(self) -> str:
        """Tansu's ``--storage-engine`` for this bucket."""
        return f"s3://{self.bucket}/"

    def _new_process(self) -> ServerProcess:
        server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if server is None:
            raise EmbeddedServerError(f"no moto_server next to {sys.executable}: {_INSTALL_HINT}")
        return ServerProcess(
            "moto_server",
            [server, "-H", LOOPBACK, "-p", str(self.port)],
            log_path=self.embedded_dir / "logs" / f"moto-{self.port}.log",
            ready=self._bucket_created,
            start_timeout_s=self._start_timeout_s,
        )

    def _bucket_created(self) -> bool:
        """Create the bucket (anonymous PUT: moto accepts it); true once it exists."""
        request = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
