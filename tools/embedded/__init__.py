"""Real servers the project starts itself: the Tansu Kafka-protocol broker and Triton.

Started for the demo, the tests, the benchmark and ``nextaction worker --embedded``; never by
the worker on its own.
Each listens on free 127.0.0.1 ports and works as a context manager or via start()/stop().
"""

from tools.embedded.broker import EmbeddedBroker
from tools.embedded.ports import free_port, free_ports
from tools.embedded.process import EmbeddedServerError
from tools.embedded.triton import EmbeddedTriton

__all__ = ["EmbeddedBroker", "EmbeddedServerError", "EmbeddedTriton", "free_port", "free_ports"]
