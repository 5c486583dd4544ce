"""A container health check: exit 0 when the worker answers 200 on the path given, else 1.

Docker's HEALTHCHECK and compose run it inside the worker container, whose slim base image has
no curl. It asks 127.0.0.1, which the worker serves when NEXTACTION_METRICS_HOST is 0.0.0.0.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def healthy(path: str, port: int, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except OSError:
        # Refused, timed out, or an HTTP error status (urllib raises those as well).
        return False


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "/livez"
    sys.exit(0 if healthy(path, int(os.environ.get("NEXTACTION_METRICS_PORT", "9108"))) else 1)
