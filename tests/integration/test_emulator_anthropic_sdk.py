"""The official ``anthropic`` SDK drives the emulator's Anthropic flavor on a real port.

Clients use ``_strict_response_validation=True`` so every response must parse into the
SDK's own types; the assertions then check the values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic
from anthropic.types.messages import MessageBatch

from batchyard.emulator import EmulatorConfig, EmulatorServer

FAST: dict[str, Any] = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}
KEY = "sk-ant-test"

StartServer = Callable[..., EmulatorServer]


@pytest.fixture()
def start_server() -> Iterator[StartServer]:
    servers: list[EmulatorServer] = []

    def start(**config: Any) -> EmulatorServer:
        cfg = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), **{**FAST, **config})
        server = EmulatorServer(cfg).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_for(server: EmulatorServer, **options: Any) -> Anthropic:
    options = {"api_key": KEY, "_strict_response_validation": True, **options}
    return Anthropic(base_url=server.base_url, **options)


def request(custom_id: str, text: str = "Hello", **params: Any) -> dict[str, Any]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 256,
            "messages": [{"role": "user", "content": text}], **params}
    return {"custom_id": custom_id, "params": body}


def wait_ended(client: Anthropic, batch_id: str, timeout: float = 15.0) -> MessageBatch:
    deadline = time.monotonic() + timeout
    batch = client.messages.batches.retrieve(batch_id)
    while batch.processing_status != "ended" and time.monotonic() < deadline:
        time.sleep(0.02)
        batch = client.messages.batches.retrieve(batch_id)
    return batch


def test_sdk_create_retrieve_results_delete(start_server: StartServer) -> None:
    server = start_server()
    client = client_for(server)
    requests = [request(f"req-{n}", f"Tell me about {n}") for n in range(4)]
    requests.append(request("no-tokens") | {"params": {"model": "claude-sonnet-4-5",
                                                        "messages": [{"role": "user",
                                                                      "content": "x"}]}})
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert re.fullmatch(r"msgbatch_[0-9A-Za-z]{24}", created.id)
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 5
    assert (created.request_counts.succeeded, created.request_counts.errored) == (0, 0)
    assert created.expires_at - created.created_at == timedelta(days=1)
    assert created.ended_at is None and created.cancel_initiated_at is None

    done = wait_ended(client, created.id)
    assert done.processing_status == "ended" and done.ended_at is not None
    assert done.ended_at >= done.created_at
    counts = done.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled,
            counts.expired) == (0, 4, 1, 0, 0)
    assert done.results_url == f"{server.base_url}/v1/messages/batches/{created.id}/results"

    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert set(results) == {"req-0", "req-1", "req-2", "req-3", "no-tokens"}
    for n in range(4):
        ok = results[f"req-{n}"]
        assert ok.type == "succeeded"
        message = ok.message
        assert message.role == "assistant" and message.model == "claude-sonnet-4-5"
        assert message.stop_reason == "end_turn" and message.content[0].type == "text"
        assert message.content[0].text.endswith(f"Tell me about {n}")
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
        assert message.usage.service_tier == "batch"
    errored = results["no-tokens"]
    assert errored.type == "errored"
    assert errored.error.error.type == "invalid_request_error"
    assert "max_tokens" in errored.error.error.message

    deleted = client.messages.batches.delete(created.id)
    assert (deleted.id, deleted.type) == (created.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.retrieve(created.id)
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert server.emulator.stats()["batches"][0] | {"status": "ended"} == {
        "id": created.id, "status": "ended", "input_file_id": None, "metadata": None,
        "model": "claude-sonnet-4-5", "request_count": 5, "first_custom_id": "req-0"}


def test_sdk_results_are_not_in_input_order_but_complete(start_server: StartServer) -> None:
    client = client_for(start_server())
    ids = [f"r{n}" for n in range(40)]
    batch = client.messages.batches.create(requests=[request(i) for i in ids])  # type: ignore[misc]
    wait_ended(client, batch.id)
    got = [r.custom_id for r in client.messages.batches.results(batch.id)]
    assert sorted(got) == sorted(ids) and got != ids


def test_sdk_lists_with_paging_both_ways(start_server: StartServer) -> None:
    client = client_for(start_server())
    created = [client.messages.batches.create(requests=[request("a")]).id  # type: ignore[list-item]
               for _ in range(5)]
    newest_first = created[::-1]
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2] and first.has_more is True
    assert (first.first_id, first.last_id) == (newest_first[0], newest_first[1])
    older = client.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in older.data] == newest_first[2:4]
    newer = client.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in newer.data] == newest_first[2:4] and newer.has_more is True
    last = client.messages.batches.list(limit=10, after_id=newest_first[3])
    assert [b.id for b in last.data] == newest_first[4:] and last.has_more is False


def test_sdk_cancel_gives_partial_results(start_server: StartServer) -> None:
    server = start_server(request_latency=0.02, cancel_grace=0.5)
    client = client_for(server)
    batch = client.messages.batches.create(  # type: ignore[misc]
        requests=[request(f"c{n}") for n in range(50)])
    time.sleep(0.15)
    cancelling = client.messages.batches.cancel(batch.id)
    assert cancelling.processing_status == "canceling"
    assert cancelling.cancel_initiated_at is not None
    assert cancelling.request_counts.processing == 50
    again = client.messages.batches.cancel(batch.id)  # still in its grace period
    assert again.processing_status == "canceling"
    assert again.cancel_initiated_at == cancelling.cancel_initiated_at
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.delete(batch.id)
    assert "cancel" in caught.value.message
    done = wait_ended(client, batch.id)
    counts = done.request_counts
    assert counts.canceled > 0 and counts.succeeded > 0
    assert counts.succeeded + counts.canceled == 50 and counts.processing == 0
    kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
    assert kinds.count("canceled") == counts.canceled and len(kinds) == 50
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)


def test_sdk_batch_expires_with_unrun_requests_expired(start_server: StartServer) -> None:
    client = client_for(start_server(request_latency=0.05, completion_window=0.2))
    batch = client.messages.batches.create(  # type: ignore[misc]
        requests=[request(f"e{n}") for n in range(20)])
    done = wait_ended(client, batch.id)
    assert done.request_counts.expired > 0
    assert done.request_counts.succeeded + done.request_counts.expired == 20
    expired = [r for r in client.messages.batches.results(batch.id)
               if r.result.type == "expired"]
    assert len(expired) == done.request_counts.expired


def test_sdk_per_request_outcomes(start_server: StartServer) -> None:
    client = client_for(start_server())
    tools = [{"name": "lookup", "description": "Look it up",
              "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    requests = [
        request("tool", "weather in Paris", tools=tools,
                tool_choice={"type": "tool", "name": "lookup"}),
        request("stop", "say STOP now", stop_sequences=["STOP"]),
        request("short", "a long question " * 10, max_tokens=3),
        request("hot", temperature=1.5),
        request("extra", frequency_penalty=0.5),
        request("fails", x_emulator={"status": 529}),
        request("gone", x_emulator={"result": "expired"}),
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    wait_ended(client, batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    tool = results["tool"]
    assert tool.type == "succeeded" and tool.message.stop_reason == "tool_use"
    block = tool.message.content[0]
    assert block.type == "tool_use" and block.name == "lookup"
    assert block.id.startswith("toolu_") and block.input["about"] == "weather in Paris"
    stop = results["stop"]
    assert stop.type == "succeeded" and stop.message.stop_reason == "stop_sequence"
    assert stop.message.stop_sequence == "STOP"
    assert "STOP" not in stop.message.content[0].text
    short = results["short"]
    assert short.type == "succeeded" and short.message.stop_reason == "max_tokens"
    assert short.message.usage.output_tokens == 3
    for custom_id, fragment in (("hot", "temperature"), ("extra", "frequency_penalty")):
        errored = results[custom_id]
        assert errored.type == "errored" and fragment in errored.error.error.message
    assert results["fails"].type == "errored"
    assert results["fails"].error.error.type == "overloaded_error"
    assert results["gone"].type == "expired"


def test_sdk_create_refuses_a_bad_envelope(start_server: StartServer) -> None:
    client = client_for(start_server(max_requests=3))
    for requests, fragment in (
        ([request("a"), request("a")], "Duplicate custom_id"),
        ([request("has space")], "custom_id"),
        ([request(f"n{n}") for n in range(4)], "at most 3"),
        ([], "at least 1"),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        assert fragment in caught.value.message
        assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_sdk_retries_429_and_529_honouring_retry_after(start_server: StartServer) -> None:
    server = start_server()
    client = client_for(server, max_retries=2)
    server.emulator.set_faults(rate_limit_next=1, overloaded_next=1, retry_after=0.2)
    started = time.monotonic()
    batch = client.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    assert time.monotonic() - started >= 0.9  # two waits of a whole second each
    assert server.emulator.stats()["batches_created"] == 1 and batch.id
    server.emulator.set_faults(overloaded_next=5)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client_for(server, max_retries=0).messages.batches.retrieve(batch.id)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert caught.value.response.headers["retry-after"] == "1"


def test_sdk_sees_auth_and_version_errors(start_server: StartServer) -> None:
    server = start_server()
    with pytest.raises(anthropic.AuthenticationError):
        client_for(server, api_key="wrong").messages.batches.list()
    answer = httpx.get(f"{server.base_url}/v1/messages/batches", headers={"x-api-key": KEY})
    assert answer.status_code == 400 and "anthropic-version" in answer.json()["error"]["message"]
    answer = httpx.get(f"{server.base_url}/v1/messages/batches",
                       headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200 and answer.headers["request-id"].startswith("req_")


def test_lagging_list_hides_a_new_batch_for_a_while(start_server: StartServer) -> None:
    server = start_server(list_lag=0.5)
    client = client_for(server)
    batch = client.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert [b.id for b in client.messages.batches.list()] == []
    time.sleep(0.6)
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


def test_running_batches_queues_a_batch_and_a_cancel_reaches_it(
        start_server: StartServer) -> None:
    client = client_for(start_server(running_batches=1, request_latency=30))
    busy = client.messages.batches.create(  # type: ignore[misc]
        requests=[request(f"b{n}") for n in range(3)])
    queued = client.messages.batches.create(  # type: ignore[misc]
        requests=[request(f"q{n}") for n in range(3)])
    client.messages.batches.cancel(queued.id)
    done = wait_ended(client, queued.id)
    # It never got a lane, so not even its first request ran.
    assert done.request_counts.canceled == 3 and done.request_counts.succeeded == 0
    assert client.messages.batches.retrieve(busy.id).processing_status == "in_progress"
    client.messages.batches.cancel(busy.id)
    ended = wait_ended(client, busy.id)
    assert ended.request_counts.succeeded + ended.request_counts.canceled == 3
