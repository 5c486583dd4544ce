"""Which Faust transport the worker runs on, chosen by the ``broker`` URL's scheme.

Both are Faust's aiokafka driver with a leaner delivery loop (:mod:`stream.lean_transport`);
the Tansu one adds the embedded broker's fixes (:mod:`stream.tansu_transport`).
"""

from __future__ import annotations

from typing import Final

from faust.transport.drivers import TRANSPORTS

from stream.lean_transport import LeanTransport
from stream.settings import Settings
from stream.tansu_transport import TansuTransport

__all__ = ["LEAN_SCHEME", "TANSU_SCHEME", "faust_broker_url", "register_transports"]

LEAN_SCHEME: Final = "kafka-lean"
TANSU_SCHEME: Final = "kafka-tansu"

_BY_SCHEME: Final = {LEAN_SCHEME: LeanTransport, TANSU_SCHEME: TansuTransport}


def register_transports(settings: Settings) -> None:
    """Make the schemes known to Faust, which resolves a broker URL's scheme through the
    registry its ``faust.transports`` entry points feed; registering here needs no packaging
    metadata. Faust builds the transport itself, so its settings travel on the class."""
    TansuTransport.fetch_max_wait_ms = settings.tansu_fetch_max_wait_ms
    for scheme, transport in _BY_SCHEME.items():
        TRANSPORTS[scheme] = f"{transport.__module__}:{transport.__name__}"


def faust_broker_url(settings: Settings) -> str:
    """Faust's ``broker`` setting: the bootstrap servers behind the scheme of their transport."""
    scheme = TANSU_SCHEME if settings.kafka_broker_kind == "tansu" else LEAN_SCHEME
    # Faust gives hosts without a scheme the first host's scheme.
    return f"{scheme}://{settings.kafka_bootstrap}"
