"""Which security settings do not go together: a client would ignore them silently, or fail
only once connected. Each problem names the variables to set or unset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.triton_security import parse_headers

if TYPE_CHECKING:
    from stream.settings import Settings

__all__ = ["security_problems"]

_PREFIX = "NEXTACTION_"  # stream.settings.ENV_PREFIX, which imports this module


def security_problems(settings: Settings) -> list[str]:
    return [*_kafka_problems(settings), *_triton_problems(settings)]


def _kafka_problems(settings: Settings) -> list[str]:
    protocol = f"{_PREFIX}KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
    credentials = {
        "KAFKA_SASL_USERNAME": bool(settings.kafka_sasl_username),
        "KAFKA_SASL_PASSWORD": bool(settings.kafka_sasl_password),
    }
    tls = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile is not None,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile is not None,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile is not None,
        "KAFKA_SSL_KEY_PASSWORD": bool(settings.kafka_ssl_key_password),
    }
    problems = []
    if settings.kafka_security_protocol.startswith("SASL_"):
        problems += [f"{protocol} needs {_PREFIX}{name}" for name, given in credentials.items() if not given]
    elif any(credentials.values()):
        problems.append(
            f"{protocol} sends no SASL credentials: set it to SASL_SSL (or SASL_PLAINTEXT), "
            f"or unset {_PREFIX}KAFKA_SASL_USERNAME and {_PREFIX}KAFKA_SASL_PASSWORD"
        )
    if not settings.kafka_security_protocol.endswith("SSL"):
        problems += [
            f"{_PREFIX}{name} is set but {protocol} has no TLS: set it to SSL or SASL_SSL"
            for name, given in tls.items()
            if given
        ]
    problems += _pair_problems(tls, "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
    if tls["KAFKA_SSL_KEY_PASSWORD"] and not tls["KAFKA_SSL_KEYFILE"]:
        problems.append(f"{_PREFIX}KAFKA_SSL_KEY_PASSWORD needs {_PREFIX}KAFKA_SSL_KEYFILE (its key)")
    return problems


def _triton_problems(settings: Settings) -> list[str]:
    tls = {
        "TRITON_SSL_ROOT_CERTIFICATES": settings.triton_ssl_root_certificates is not None,
        "TRITON_SSL_PRIVATE_KEY": settings.triton_ssl_private_key is not None,
        "TRITON_SSL_CERTIFICATE_CHAIN": settings.triton_ssl_certificate_chain is not None,
    }
    problems = []
    if not settings.triton_ssl:
        problems += [
            f"{_PREFIX}{name} is set but TLS to Triton is off: set {_PREFIX}TRITON_SSL=true"
            for name, given in tls.items()
            if given
        ]
    problems += _pair_problems(tls, "TRITON_SSL_PRIVATE_KEY", "TRITON_SSL_CERTIFICATE_CHAIN")
    try:
        parse_headers(settings.triton_headers.get_secret_value())
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def _pair_problems(given: dict[str, bool], first: str, second: str) -> list[str]:
    """A client certificate and its key come together: one without the other is a mistake."""
    if given[first] == given[second]:
        return []
    present, missing = (first, second) if given[first] else (second, first)
    return [f"{_PREFIX}{present} needs {_PREFIX}{missing} (a client certificate and its key go together)"]
