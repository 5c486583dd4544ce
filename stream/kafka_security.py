"""How every Kafka client of the service authenticates and encrypts: one record, built from the
settings, from which the Faust app, the topic admin and the tools take their arguments, so no
client builds its own (a client that forgot TLS would fail only against a secured cluster).

kafka-python and aiokafka name their security arguments alike, so :meth:`KafkaSecurity.client_kwargs`
serves both. The settings refuse incomplete combinations when they load
(:meth:`stream.settings.Settings._check_security`).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import faust
from faust.types.auth import CredentialsT
from pydantic import SecretStr

from stream.settings import KafkaProtocol, SaslMechanism, Settings, SettingsError

__all__ = ["PLAINTEXT", "KafkaSecurity"]

log = logging.getLogger(__name__)

_NO_SECRET: Final = SecretStr("")  # immutable, so one default serves every instance


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS (a CA bundle, optionally a client certificate and key) and SASL credentials.

    Passwords stay ``SecretStr`` until the moment a client takes them, so a repr or log of
    this record shows none.
    """

    protocol: KafkaProtocol = "PLAINTEXT"
    cafile: Path | None = None  # None: the system's trusted CAs
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: SecretStr = _NO_SECRET
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = _NO_SECRET

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        return cls(
            protocol=settings.kafka_security_protocol,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            key_password=settings.kafka_ssl_key_password,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (verifying the brokers' certificates and host names), or None."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.certfile is not None:
            try:
                # A callable, even for no password: OpenSSL would otherwise prompt on the terminal
                # for an encrypted key.
                context.load_cert_chain(
                    self.certfile, self.keyfile, password=self.key_password.get_secret_value
                )
            except ssl.SSLError as exc:
                raise SettingsError(
                    f"cannot load the client certificate {self.certfile} with key {self.keyfile} "
                    f"({exc.reason or exc}): check NEXTACTION_KAFKA_SSL_CERTFILE, "
                    "NEXTACTION_KAFKA_SSL_KEYFILE and NEXTACTION_KAFKA_SSL_KEY_PASSWORD"
                ) from None
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for a kafka-python or aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return kwargs

    def faust_credentials(self) -> CredentialsT | None:
        """Faust's ``broker_credentials``, for the app's consumer and producer; built once, at
        the worker's start, which is where SASL without TLS is warned about."""
        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        if self.protocol == "SASL_PLAINTEXT":
            log.warning(
                "NEXTACTION_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the SASL credentials (and every "
                "record) travel in clear; use SASL_SSL outside a trusted network"
            )
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password.get_secret_value(),
            mechanism=self.sasl_mechanism,
            ssl_context=self.ssl_context(),
        )


#: No TLS, no SASL: the embedded broker, and tools given no settings.
PLAINTEXT: Final = KafkaSecurity()
