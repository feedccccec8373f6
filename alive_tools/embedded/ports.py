"""Free loopback ports for the embedded components."""

from __future__ import annotations

import contextlib
import socket


def free_port() -> int:
    """A port nothing listens on right now (bound and released; callers retry on a race)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on right now: all are held until all are
    picked, so two calls in a row cannot hand out the same port."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
