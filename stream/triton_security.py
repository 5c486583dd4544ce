"""How the service reaches Triton securely: TLS for the gRPC channel (optionally with a client
certificate) and headers sent with every request (e.g. a gateway's bearer token).

Header values are secrets: the record's repr leaves them out, and a malformed value is
reported by its position, never echoed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from stream.settings import Settings

__all__ = ["NO_TLS", "TritonSecurity", "parse_headers"]

_HEADERS_FORMAT: Final = "expected key=value[,key=value] or a JSON object of strings"


@dataclass(frozen=True)
class TritonSecurity:
    ssl: bool = False
    root_certificates: Path | None = None  # None: gRPC's default roots
    private_key: Path | None = None
    certificate_chain: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonSecurity:
        return cls(
            ssl=settings.triton_ssl,
            root_certificates=settings.triton_ssl_root_certificates,
            private_key=settings.triton_ssl_private_key,
            certificate_chain=settings.triton_ssl_certificate_chain,
            headers=parse_headers(settings.triton_headers.get_secret_value()),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for tritonclient's ``InferenceServerClient`` (it opens the files itself)."""
        return {
            "ssl": self.ssl,
            "root_certificates": _optional_str(self.root_certificates),
            "private_key": _optional_str(self.private_key),
            "certificate_chain": _optional_str(self.certificate_chain),
        }

    @property
    def request_headers(self) -> dict[str, str] | None:
        """The ``headers`` argument of every request (None: none to send)."""
        return dict(self.headers) or None


def parse_headers(text: str) -> dict[str, str]:
    """``key=value,key=value`` or a JSON object (for values with commas). Keys are lower-cased:
    gRPC refuses metadata keys with capitals. ValueError names the entry, not its value."""
    if not text.strip():
        return {}
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"NEXTACTION_TRITON_HEADERS is not valid JSON ({_HEADERS_FORMAT})") from None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise ValueError(f"NEXTACTION_TRITON_HEADERS: {_HEADERS_FORMAT}")
        pairs = list(doc.items())
    else:
        pairs = []
        for position, entry in enumerate(text.split(","), start=1):
            key, sep, value = entry.partition("=")
            if not sep:
                raise ValueError(
                    f"NEXTACTION_TRITON_HEADERS: entry {position} has no '=' ({_HEADERS_FORMAT})"
                )
            pairs.append((key, value.strip()))
    headers = {key.strip().lower(): value for key, value in pairs}
    if "" in headers:
        raise ValueError(f"NEXTACTION_TRITON_HEADERS: a header has an empty name ({_HEADERS_FORMAT})")
    return headers


def _optional_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


#: Plain gRPC, no headers: the embedded Triton, and callers given no settings.
NO_TLS: Final = TritonSecurity()
