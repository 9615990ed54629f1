"""LendingTransport: a request never shares an inner connection pool with another one in
flight, inner transports are reused once their response is closed, and closing works."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from batchyard.providers.lending import LendingTransport


class Body(httpx.SyncByteStream):
    """A body sent as it is read, as over a socket (a MockTransport's text is read at once)."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __iter__(self) -> Iterator[bytes]:
        yield self._text.encode()


class Inner(httpx.MockTransport):
    """An inner transport that answers with its own number and remembers being closed."""

    def __init__(self, number: int) -> None:
        super().__init__(self._answer)
        self.number = number
        self.closed = False

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/read":
            return httpx.Response(200, text=str(self.number))
        return httpx.Response(200, stream=Body(str(self.number)))

    def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self) -> None:
        self.made: list[Inner] = []
        self.contexts: set[int] = set()

    def __call__(self, context: ssl.SSLContext) -> Inner:
        self.contexts.add(id(context))
        self.made.append(Inner(len(self.made)))
        return self.made[-1]


def test_requests_in_flight_together_each_get_their_own_inner_transport() -> None:
    factory = Factory()
    with httpx.Client(transport=LendingTransport(factory)) as client:
        with client.stream("GET", "http://p.test/a") as first, \
                client.stream("GET", "http://p.test/b") as second:
            assert {first.read(), second.read()} == {b"0", b"1"}
        # Both answers are closed: later requests (one at a time) reuse, never create.
        answers = {client.get("http://p.test/c").text for _ in range(5)}
    assert len(factory.made) == 2
    assert answers == {"1"}  # the most recently returned one first
    assert len(factory.contexts) == 1  # one SSL context for all


def test_a_failed_request_gives_its_transport_back() -> None:
    factory = Factory()
    transport = LendingTransport(factory)
    with httpx.Client(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                client.get("http://p.test/down")
        assert client.get("http://p.test/up").text == "0"
        assert client.get("http://p.test/read").text == "0"  # an answer read whole at once
        assert client.get("http://p.test/up").text == "0"
    assert transport.created == 1


def test_close_closes_idle_transports_now_and_busy_ones_when_their_answer_closes() -> None:
    factory = Factory()
    transport = LendingTransport(factory)
    client = httpx.Client(transport=transport)
    idle = client.send(client.build_request("GET", "http://p.test/a"), stream=True)
    busy = client.send(client.build_request("GET", "http://p.test/b"), stream=True)
    idle.close()  # inner 0 back on the shelf; inner 1 still serves ``busy``
    client.close()
    assert [inner.closed for inner in factory.made] == [True, False]
    busy.close()
    assert [inner.closed for inner in factory.made] == [True, True]
    with pytest.raises(RuntimeError):
        transport.handle_request(httpx.Request("GET", "http://p.test/c"))
