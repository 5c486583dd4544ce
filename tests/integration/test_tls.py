"""A worker, replay and the topic reader against a broker reached only through mutual TLS.

This build of Tansu (0.6.0) serves no TLS (its ``--cert`` and ``--key`` options refuse each
other), so a TLS terminator in this module stands in front of it, requiring a client
certificate, and Tansu advertises the terminator's address: every connection a client opens
after bootstrap goes through TLS as well. The certificates are made here, the client's key
encrypted with a password, so every Kafka TLS setting is exercised.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from serving.synthetic import SyntheticConfig, generate_events
from stream.kafka_security import KafkaSecurity
from tests.tls_certificates import Certificates, make_certificates
from tools.embedded import EmbeddedBroker
from tools.embedded.ports import LOOPBACK, free_port
from tools.replay import event_message, replay
from tools.topic_reader import read_until_idle

pytestmark = pytest.mark.integration

_KEY_PASSWORD = "key-secret-in-test"


class TlsTerminator:
    """Accepts TLS on ``port`` (a client certificate signed by the CA required) and relays the
    plaintext to ``target_port``, in a thread with its own event loop."""

    def __init__(self, port: int, target_port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.accepted = 0  # TLS connections whose handshake succeeded
        self._target_port = target_port
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, LOOPBACK, self.port, ssl=self._context), self._loop
        )
        self._server = server.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        self.accepted += 1
        broker_in, broker_out = await asyncio.open_connection(LOOPBACK, self._target_port)
        await asyncio.gather(_pipe(client_in, broker_out), _pipe(broker_in, client_out))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # either side hung up: the other is closed below
    finally:
        sink.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"), _KEY_PASSWORD)


@pytest.fixture(scope="module")
def terminator(embedded_dir: Path, certificates: Certificates) -> Iterator[TlsTerminator]:
    """A Tansu of this module's own behind the TLS terminator, which it advertises."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certificates.ca)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    tls_port = free_port()
    with (
        EmbeddedBroker(embedded_dir, advertised_port=tls_port) as broker,
        TlsTerminator(tls_port, broker.port, context) as tls,
    ):
        yield tls


@pytest.fixture(scope="module")
def kafka_broker(terminator: TlsTerminator) -> str:
    """The bootstrap address every client of this module gets: TLS only."""
    return f"{LOOPBACK}:{terminator.port}"


def test_worker_replay_and_reader_go_through_mutual_tls(
    worker_factory, certificates: Certificates, terminator: TlsTerminator
) -> None:
    worker = worker_factory(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certificates.ca,
        kafka_ssl_certfile=certificates.client_cert,
        kafka_ssl_keyfile=certificates.client_key,
        kafka_ssl_key_password=_KEY_PASSWORD,
    ).start()
    settings = worker.settings
    security = KafkaSecurity.from_settings(settings)
    events = generate_events(SyntheticConfig(n_users=8, mean_events_per_user=5, seed=5))
    replay(
        settings.kafka_bootstrap,
        settings.topic_events,
        [event_message(event) for event in events],
        rate_per_s=10_000,
        security=security,
    )
    published = worker.wait_acknowledged(len(events), timeout_s=60)[
        "nextaction_recommendations_published_total"
    ]

    records = list(
        read_until_idle(
            settings.kafka_bootstrap,
            settings.topic_recommendations,
            settings.topic_partitions,
            security=security,
        )
    )
    assert len(records) == published > 0
    assert {orjson.loads(record.value)["user_id"] for record in records} == {e["user_id"] for e in events}
    # The admin, the worker's consumer and producer, replay and the reader each connected.
    assert terminator.accepted >= 5
    assert worker.stop() == 0
    assert _KEY_PASSWORD not in worker.log.read_text()
