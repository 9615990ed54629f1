"""The served protocol bounds how long and how large a request's header block may be."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn

from batchyard.api.protocol import BoundedHttpToolsProtocol
from batchyard.config import ApiSettings


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Protocol(BoundedHttpToolsProtocol):
    limits = ApiSettings(header_read_timeout=0.5, max_header_bytes=4096)


@pytest.fixture
def port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, http=_Protocol, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def _answer(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_normal_request_is_answered_on_a_kept_alive_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for _ in range(2):
            conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            conn.settimeout(5)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")


def test_headers_that_trickle_are_refused_with_408(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 4
    body = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"


def test_an_oversized_header_block_is_refused_with_431_before_it_ends(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8192 + b"\r\n")
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 431")
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"
