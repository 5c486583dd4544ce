"""Real servers the project starts itself: the Tansu Kafka-protocol broker and Triton.

Used when no external address is configured (tests, demo, a first look at the worker).
Each listens on free 127.0.0.1 ports and works as a context manager or via start()/stop().
"""

from tools.embedded.broker import EmbeddedBroker
from tools.embedded.ports import free_port, free_ports
from tools.embedded.process import EmbeddedServerError
from tools.embedded.triton import EmbeddedTriton

__all__ = ["EmbeddedBroker", "EmbeddedServerError", "EmbeddedTriton", "free_port", "free_ports"]
