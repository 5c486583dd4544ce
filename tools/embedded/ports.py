"""Free TCP ports on the loopback interface for the embedded servers."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from typing import Final

__all__ = ["LOOPBACK", "free_port", "free_ports", "is_free"]

#: Embedded servers listen on loopback only: they are for this machine's tests and demo.
LOOPBACK: Final = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free right now.

    All sockets stay bound until every port is picked, so the OS cannot hand out one port
    twice. Another process may still take a port before the server binds it; the server then
    dies at start and the launcher's error shows its log.
    """
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port() -> int:
    """One port that is free right now (see :func:`free_ports`)."""
    return free_ports(1)[0]


def is_free(port: int) -> bool:
    """Whether ``port`` can be bound on loopback right now.

    Checked before starting on a given port: a server that loses the bind may keep running
    for a moment while another server on that port answers its readiness probe.
    """
    with socket.socket() as sock:
        # As servers do, so connections of a previous server on the port (TIME_WAIT) don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
