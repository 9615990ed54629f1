"""The listening socket of ``serve --workers N``: on Linux, one socket per process.

uvicorn binds one socket in the parent and every worker process accepts on it. Both processes
wake for a new connection, and asyncio's accept loop takes every connection already waiting
(up to the backlog) in one go, so a burst of keep-alive clients lands mostly on one process:
16 clients of ``benchmarks/api_bench.py`` were split 1/15, 2/14, 4/12, 7/9 between two
processes, and the busy one served nearly all creates while the other idled.

With ``SO_REUSEPORT`` each process listens on a socket of its own, bound to the same address,
and the kernel spreads new connections over them by a hash of the client's address and port.
uvicorn hands its sockets to the worker processes by pickling them (``spawn``);
:class:`ReusePortListener` pickles as "bind another such socket here", so each worker opens
its own. The parent's socket is bound (an address in use fails at once, before any worker
starts) but never listens, so the kernel never hands it a connection.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def _reuse_port_socket(family: int, address: Any) -> socket.socket:
    sock = ReusePortListener(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


class ReusePortListener(socket.socket):
    """A socket bound with ``SO_REUSEPORT``; a process it is pickled to binds its own."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reuse_port_socket, (self.family, self.getsockname()))


def balanced_listener(host: str, port: int) -> socket.socket | None:
    """A :class:`ReusePortListener` on (host, port), or None where the kernel does not spread
    connections over such sockets (only Linux does; elsewhere uvicorn binds its own)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _reuse_port_socket(family, (host, port))
