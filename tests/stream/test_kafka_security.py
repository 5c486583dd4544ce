"""Security settings: every Kafka and Triton client gets them, incomplete ones are refused when
the settings load, and no secret reaches a repr, an error or a log.

The real call sites run with their client classes replaced by recorders, which stop the call
once the arguments are captured: what is checked is what each site passes, not a copy of it.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any, ClassVar

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

import stream.admin
import stream.inference
import tools.demo
import tools.replay
import tools.topic_reader
import tools.watch
from stream.admin import ensure_topics
from stream.app import create_app
from stream.inference import check_model_ready
from stream.kafka_security import KafkaSecurity
from stream.metrics import StreamMetrics
from stream.settings import Settings, SettingsError, load_settings
from stream.triton_security import TritonSecurity, parse_headers
from tests.tls_certificates import Certificates, make_certificates
from tools.dump import dump_events
from tools.replay import replay
from tools.topic_reader import committed_offsets, read_until_idle
from tools.watch import WatchOptions, watch

pytestmark = pytest.mark.unit

_KEY_PASSWORD = "key-pass-7f3a"
_SASL_PASSWORD = "sasl-pass-91c2"
_HEADER_VALUE = "Bearer token-5d0e"


class _Captured(Exception):
    """Raised by a recording client once it has its arguments."""


class _Recorder:
    """Stands in for a client class: records each construction's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise _Captured


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"), _KEY_PASSWORD)


@pytest.fixture
def sasl_ssl(certificates: Certificates) -> Settings:
    """mTLS and SCRAM together: every Kafka setting in use."""
    return Settings(
        kafka_bootstrap="kafka:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=certificates.ca,
        kafka_ssl_certfile=certificates.client_cert,
        kafka_ssl_keyfile=certificates.client_key,
        kafka_ssl_key_password=_KEY_PASSWORD,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="worker",
        kafka_sasl_password=_SASL_PASSWORD,
    )


def _assert_secured(kwargs: dict[str, Any]) -> None:
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("worker", _SASL_PASSWORD)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(
        cert["subject"] == ((("commonName", "nextaction test CA"),),) for cert in context.get_ca_certs()
    )


def test_every_kafka_python_client_gets_the_credentials(
    sasl_ssl: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    security = KafkaSecurity.from_settings(sasl_ssl)
    sites = {
        "admin": (stream.admin, "KafkaAdminClient", lambda: ensure_topics("kafka:9093", sasl_ssl)),
        "replay": (
            tools.replay,
            "KafkaProducer",
            lambda: replay("k:1", "t", [], rate_per_s=1, security=security),
        ),
        "reader": (
            tools.topic_reader,
            "KafkaConsumer",
            lambda: next(read_until_idle("k:1", "t", 1, security=security)),
        ),
        "committed": (
            tools.topic_reader,
            "KafkaConsumer",
            lambda: committed_offsets("k:1", "g", "t", 1, security),
        ),
        "dump": (
            tools.topic_reader,
            "KafkaConsumer",
            lambda: dump_events("k:1", sasl_ssl, tmp_path / "out.jsonl"),
        ),
        "demo": (tools.demo, "KafkaConsumer", lambda: tools.demo._OutputWatcher("k:1", sasl_ssl, show=0)),
        "watch": (tools.watch, "KafkaConsumer", lambda: watch(sasl_ssl, WatchOptions(), None)),  # type: ignore[arg-type]
    }
    for site, (module, name, call) in sites.items():
        recorder = _Recorder()
        monkeypatch.setattr(module, name, recorder)
        with pytest.raises(_Captured):
            call()
        assert len(recorder.calls) == 1, site
        _assert_secured(recorder.calls[0])


def test_the_faust_app_gets_the_credentials_its_aiokafka_clients_take(sasl_ssl: Settings) -> None:
    credentials = create_app(sasl_ssl, StreamMetrics.create()).app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust's aiokafka driver hands its consumer and producer.
    auth = dict(credentials_to_aiokafka_auth(credentials))
    _assert_secured(auth)
    assert auth == {
        **KafkaSecurity.from_settings(sasl_ssl).client_kwargs(),
        "ssl_context": auth["ssl_context"],
    }


def test_tls_alone_gives_faust_ssl_credentials(certificates: Certificates) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=certificates.ca)
    credentials = KafkaSecurity.from_settings(settings).faust_credentials()
    assert isinstance(credentials, faust.SSLCredentials)
    assert dict(credentials_to_aiokafka_auth(credentials))["security_protocol"] == "SSL"
    assert KafkaSecurity.from_settings(Settings()).client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity.from_settings(Settings()).faust_credentials() is None


def test_a_wrong_key_password_is_reported_without_the_password(certificates: Certificates) -> None:
    security = KafkaSecurity(
        protocol="SSL",
        certfile=certificates.client_cert,
        keyfile=certificates.client_key,
        key_password=SecretStr("wrong-pw"),
    )
    with pytest.raises(SettingsError, match="NEXTACTION_KAFKA_SSL_KEY_PASSWORD") as failure:
        security.ssl_context()
    assert "wrong-pw" not in str(failure.value)


class _RecordingTriton:
    """Stands in for tritonclient's aio InferenceServerClient: ready, then stops at the config."""

    instances: ClassVar[list[_RecordingTriton]] = []

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.headers: list[Any] = []
        _RecordingTriton.instances.append(self)

    async def is_model_ready(self, model_name: str, headers: Any = None) -> bool:
        self.headers.append(headers)
        return True

    async def get_model_config(self, model_name: str, headers: Any = None, as_json: bool = False) -> Any:
        self.headers.append(headers)
        raise _Captured

    async def close(self) -> None:
        pass


def test_the_triton_client_gets_tls_and_every_request_the_headers(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        triton_ssl=True,
        triton_ssl_root_certificates=certificates.ca,
        triton_ssl_private_key=certificates.server_key,
        triton_ssl_certificate_chain=certificates.server_cert,
        triton_headers=f"Authorization={_HEADER_VALUE},x-tenant=shop",
    )
    _RecordingTriton.instances.clear()
    monkeypatch.setattr(stream.inference.grpcclient, "InferenceServerClient", _RecordingTriton)
    with pytest.raises(_Captured):
        check_model_ready("triton:8001", "nextaction", 1.0, TritonSecurity.from_settings(settings))
    (client,) = _RecordingTriton.instances
    assert {
        key: client.kwargs[key] for key in ("ssl", "root_certificates", "private_key", "certificate_chain")
    } == {
        "ssl": True,
        "root_certificates": str(certificates.ca),
        "private_key": str(certificates.server_key),
        "certificate_chain": str(certificates.server_cert),
    }
    assert "channel_args" in client.kwargs
    expected = {"authorization": _HEADER_VALUE, "x-tenant": "shop"}
    assert client.headers == [expected, expected]


def test_the_worker_scorer_is_built_with_the_settings_triton_security(certificates: Certificates) -> None:
    settings = Settings(
        triton_ssl=True, triton_ssl_root_certificates=certificates.ca, triton_headers='{"k": "v"}'
    )
    scorer = create_app(settings, StreamMetrics.create()).scorer
    assert scorer._security == TritonSecurity.from_settings(settings)
    assert scorer._headers == {"k": "v"}


def test_headers_parse_from_pairs_or_json() -> None:
    assert parse_headers("") == {}
    assert parse_headers(" A = b=c , d=e") == {"a": "b=c", "d": "e"}
    assert parse_headers('{"Authorization": "Bearer a,b"}') == {"authorization": "Bearer a,b"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs NEXTACTION_KAFKA_SASL_USERNAME"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"},
            "SASL_PLAINTEXT needs NEXTACTION_KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_PASSWORD": "p"}, "PLAINTEXT sends no SASL credentials: set it to SASL_SSL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "NEXTACTION_KAFKA_SECURITY_PROTOCOL: Input should be"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
            "NEXTACTION_KAFKA_SSL_CAFILE: Path does not point to a file",
        ),
        (
            {"KAFKA_SSL_CAFILE": "{ca}"},
            "NEXTACTION_KAFKA_SSL_CAFILE is set but NEXTACTION_KAFKA_SECURITY_PROTOCOL=PLAINTEXT has no TLS",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "{cert}"},
            "NEXTACTION_KAFKA_SSL_CERTFILE needs NEXTACTION_KAFKA_SSL_KEYFILE",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "{key}"},
            "NEXTACTION_KAFKA_SSL_KEYFILE needs NEXTACTION_KAFKA_SSL_CERTFILE",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_PASSWORD": "x"},
            "KAFKA_SSL_KEY_PASSWORD needs NEXTACTION_KAFKA_SSL_KEYFILE",
        ),
        ({"TRITON_SSL_ROOT_CERTIFICATES": "{ca}"}, "set NEXTACTION_TRITON_SSL=true"),
        (
            {"TRITON_SSL": "true", "TRITON_SSL_PRIVATE_KEY": "{key}"},
            "TRITON_SSL_PRIVATE_KEY needs NEXTACTION_TRITON_SSL_CERTIFICATE_CHAIN",
        ),
        ({"TRITON_HEADERS": "authorization"}, "NEXTACTION_TRITON_HEADERS: entry 1 has no '='"),
        ({"TRITON_HEADERS": '{"a": 1}'}, "NEXTACTION_TRITON_HEADERS: expected key=value"),
    ],
)
def test_incomplete_security_settings_are_refused_saying_what_to_set(
    env: dict[str, str], expected: str, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"ca": certificates.ca, "cert": certificates.client_cert, "key": certificates.client_key}
    for name, value in env.items():
        placeholder = value.removeprefix("{").removesuffix("}")
        monkeypatch.setenv(f"NEXTACTION_{name}", str(files[placeholder]) if placeholder in files else value)
    load_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as failure:
            load_settings()
    finally:
        load_settings.cache_clear()
    assert expected in str(failure.value)


def test_no_secret_reaches_a_repr_an_error_or_a_log(
    sasl_ssl: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = (_KEY_PASSWORD, _SASL_PASSWORD, _HEADER_VALUE)
    settings = sasl_ssl.model_copy(
        update={"triton_headers": Settings(triton_headers=f"authorization={_HEADER_VALUE}").triton_headers}
    )
    shown = [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        repr(KafkaSecurity.from_settings(settings)),
        repr(KafkaSecurity.from_settings(settings).faust_credentials()),
        repr(TritonSecurity.from_settings(settings)),
    ]
    # A refused configuration's error, through the environment as the worker reads it.
    monkeypatch.setenv("NEXTACTION_KAFKA_SASL_PASSWORD", _SASL_PASSWORD)
    monkeypatch.setenv("NEXTACTION_TRITON_HEADERS", f"authorization {_HEADER_VALUE}")
    load_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as failure:
            load_settings()
    finally:
        load_settings.cache_clear()
    shown.append(str(failure.value))
    monkeypatch.delenv("NEXTACTION_KAFKA_SASL_PASSWORD")
    monkeypatch.delenv("NEXTACTION_TRITON_HEADERS")
    with pytest.raises(ValueError) as direct:
        Settings(kafka_sasl_password=_SASL_PASSWORD, triton_headers=f"x {_HEADER_VALUE}")
    shown.append(str(direct.value))
    # SASL without TLS is warned about at the worker's start, naming no credential.
    with caplog.at_level(logging.WARNING, logger="stream.kafka_security"):
        cleartext = Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="worker",
            kafka_sasl_password=_SASL_PASSWORD,
        )
        create_app(cleartext, StreamMetrics.create())
    assert any("travel in clear" in record.getMessage() for record in caplog.records)
    shown.append(caplog.text)
    for text in shown:
        for secret in secrets:
            assert secret not in text, text
