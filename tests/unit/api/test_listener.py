"""The per-process listening sockets of ``serve --workers N`` (Linux): a listener pickled to
another process becomes a socket of its own on the same address, and connections to that
address reach both listeners."""

from __future__ import annotations

import pickle
import socket
import sys

import pytest

from batchyard.api.listener import balanced_listener

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT spreads connections on Linux only")


def test_a_pickled_listener_is_a_new_socket_on_the_same_address() -> None:
    parent = balanced_listener("127.0.0.1", 0)
    assert parent is not None
    with parent, pickle.loads(pickle.dumps(parent)) as child:
        assert child.fileno() != parent.fileno()
        assert child.getsockname() == parent.getsockname()
        assert child.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_connections_spread_over_the_listening_sockets_and_skip_the_parents() -> None:
    parent = balanced_listener("127.0.0.1", 0)
    assert parent is not None
    address = parent.getsockname()
    first, second = pickle.loads(pickle.dumps(parent)), pickle.loads(pickle.dumps(parent))
    clients: list[socket.socket] = []
    try:
        for listener in (first, second):
            listener.listen(64)
            listener.setblocking(False)
        for _ in range(64):
            clients.append(socket.create_connection(address, timeout=5))
        accepted = [_drain(first), _drain(second)]
    finally:
        for sock in (*clients, first, second, parent):
            sock.close()
    # The parent never listens: every connection went to one of the two, and both got some.
    assert sum(accepted) == 64
    assert min(accepted) > 0, accepted


def _drain(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1
