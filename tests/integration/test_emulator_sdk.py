"""The official ``openai`` SDK drives the emulator on a real port, for both flavors.

Clients use ``_strict_response_validation=True`` so every response must parse into the
SDK's own types; the assertions then check the values.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI
from openai.types import Batch
from openai.types.chat import ChatCompletion

from batchyard.emulator import EmulatorConfig, EmulatorServer

FAST: dict[str, Any] = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
FLAVORS = ["openai", "azure", "azure_v1"]
ID_SHAPES = {
    "openai": (r"^file-[0-9A-Za-z]{22}$", r"^batch_[0-9a-f]{32}$"),
    "azure": (r"^file-[0-9a-f]{32}$", r"^batch_[0-9a-f-]{36}$"),
}

StartServer = Callable[..., EmulatorServer]


@pytest.fixture()
def start_server() -> Iterator[StartServer]:
    servers: list[EmulatorServer] = []

    def start(flavor: str = "openai", **config: Any) -> EmulatorServer:
        server = EmulatorServer(EmulatorConfig(flavor=flavor, **{**FAST, **config})).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_for(server: EmulatorServer, surface: str, **options: Any) -> OpenAI:
    """An SDK client for one surface (``azure`` = the dated surface through AzureOpenAI)."""
    options = {"api_key": "sk-test", "_strict_response_validation": True, **options}
    if surface == "azure":
        return AzureOpenAI(azure_endpoint=server.base_url, api_version="2024-10-21", **options)
    suffix = "/openai/v1" if surface == "azure_v1" else "/v1"
    return OpenAI(base_url=server.base_url + suffix, **options)


def flavor_of(surface: str) -> str:
    return "openai" if surface == "openai" else "azure"


def requests_file(count: int, *, bad: int = 0) -> bytes:
    """``count`` chat requests, the last ``bad`` of which the endpoint rejects (no messages)."""
    lines = []
    for i in range(count):
        body: dict[str, Any] = {"model": "gpt-4o-mini"}
        if i < count - bad:
            body["messages"] = [{"role": "user", "content": f"Tell me about {i}"}]
        lines.append(json.dumps({"custom_id": f"req-{i}", "method": "POST",
                                 "url": "/v1/chat/completions", "body": body}))
    return ("\n".join(lines) + "\n").encode()


def wait_done(client: OpenAI, batch_id: str, timeout: float = 15.0) -> Batch:
    deadline = time.monotonic() + timeout
    batch = client.batches.retrieve(batch_id)
    while batch.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.02)
        batch = client.batches.retrieve(batch_id)
    return batch


def submit(client: OpenAI, data: bytes, **kwargs: Any) -> Batch:
    uploaded = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", **kwargs)


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_round_trip_upload_create_poll_download_delete(start_server: StartServer,
                                                           surface: str) -> None:
    server = start_server(flavor_of(surface))
    client = client_for(server, surface)
    file_shape, batch_shape = ID_SHAPES[flavor_of(surface)]
    data = requests_file(6, bad=2)
    uploaded = client.files.create(file=("part-1.jsonl", io.BytesIO(data)), purpose="batch")
    assert re.match(file_shape, uploaded.id)
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (len(data), "part-1.jsonl",
                                                                     "batch")
    assert client.files.retrieve(uploaded.id).id == uploaded.id

    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h",
                                    metadata={"batchyard_part_id": "part-1"})
    assert re.match(batch_shape, created.id) and created.status == "validating"
    batch = wait_done(client, created.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (6, 4, 2)
    stamps = [batch.created_at, batch.in_progress_at, batch.finalizing_at, batch.completed_at]
    assert None not in stamps and stamps == sorted(stamps)  # type: ignore[type-var]
    assert batch.metadata == {"batchyard_part_id": "part-1"}

    assert batch.output_file_id and batch.error_file_id
    output = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in output) == [f"req-{i}" for i in range(4)]
    assert sorted(x["custom_id"] for x in errors) == ["req-4", "req-5"]
    for line in output:
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.choices[0].message.content and completion.usage
        assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                                 + completion.usage.completion_tokens)
    assert {x["response"]["status_code"] for x in errors} == {400}
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"

    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    stats = server.emulator.stats()
    assert (stats["files_uploaded"], stats["batches_created"]) == (1, 1)


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_lists_batches_across_pages(start_server: StartServer, surface: str) -> None:
    server = start_server(flavor_of(surface), validation_delay=30)
    client = client_for(server, surface)
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(requests_file(1))),
                                   purpose="batch")
    ids = [client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for _ in range(23)]
    first = client.batches.list(limit=10)
    assert len(first.data) == 10 and first.has_next_page()
    assert [b.id for b in client.batches.list(limit=10)] == ids[::-1]  # auto-paging


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_cancel_gives_partial_results(start_server: StartServer, surface: str) -> None:
    server = start_server(flavor_of(surface), request_latency=0.01, cancel_grace=0.05)
    client = client_for(server, surface)
    batch = submit(client, requests_file(300))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = client.batches.retrieve(batch.id)
        if current.request_counts and current.request_counts.completed >= 3:
            break
        time.sleep(0.01)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = wait_done(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and 0 < done.request_counts.completed < 300
    assert done.error_file_id
    unrun = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(unrun) == done.request_counts.failed
    assert {x["error"]["code"] for x in unrun} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_sees_validation_errors_with_code_and_line(start_server: StartServer,
                                                       surface: str) -> None:
    client = client_for(start_server(flavor_of(surface)), surface)
    good = requests_file(2).decode()
    batch = wait_done(client, submit(client, (good + "{not json}\n").encode()).id)
    assert batch.status == "failed" and batch.errors and batch.errors.data
    error = batch.errors.data[0]
    assert (error.code, error.line) == ("invalid_json_line", 3)
    assert batch.output_file_id is None


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_retries_429_honouring_retry_after(start_server: StartServer, surface: str) -> None:
    server = start_server(flavor_of(surface), rate_limit_next=2, retry_after=0.05)
    client = client_for(server, surface, max_retries=2)
    assert client.batches.list().data == []  # the SDK retried through both 429s
    server.emulator.set_faults(rate_limit_next=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client_for(server, surface, max_retries=0).batches.list()
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "0.05"
    assert caught.value.request_id


@pytest.mark.parametrize("surface", ["openai", "azure"])
def test_sdk_sees_500s_and_dropped_connections(start_server: StartServer, surface: str) -> None:
    server = start_server(flavor_of(surface), server_error_next=1)
    strict = client_for(server, surface, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        strict.files.list()
    server.emulator.set_faults(drop_next=1)
    with pytest.raises(openai.APIConnectionError):
        strict.files.list()
    server.emulator.set_faults(server_error_next=1, drop_next=1)
    assert client_for(server, surface, max_retries=3).files.list().data == []


def test_a_real_dropped_connection_is_a_protocol_error(start_server: StartServer) -> None:
    server = start_server("openai", drop_next=1)
    with httpx.Client(base_url=server.base_url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/v1/files")
        assert http.get("/v1/files").status_code == 200


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_wrong_key_is_an_authentication_error(start_server: StartServer,
                                                  surface: str) -> None:
    server = start_server(flavor_of(surface), api_keys=("sk-right",))
    with pytest.raises(openai.AuthenticationError):
        client_for(server, surface, api_key="sk-wrong").files.list()
    assert client_for(server, surface, api_key="sk-right").files.list().data == []


@pytest.mark.parametrize("surface", FLAVORS)
def test_sdk_upload_errors(start_server: StartServer, surface: str) -> None:
    client = client_for(start_server(flavor_of(surface), max_file_bytes=64), surface)
    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.files.create(file=("x.csv", io.BytesIO(b"a,b")), purpose="batch")
    assert "Must be .jsonl" in str(wrong_type.value)
    with pytest.raises(openai.BadRequestError) as too_big:
        client.files.create(file=("x.jsonl", io.BytesIO(requests_file(3))), purpose="batch")
    assert "File is too large." in str(too_big.value)


def test_sdk_embeddings_batch(start_server: StartServer) -> None:
    client = client_for(start_server("openai"), "openai")
    lines = [json.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "text-embedding-3-small", "input": f"text {i}"}})
             for i in range(3)]
    uploaded = client.files.create(file=("e.jsonl", io.BytesIO("\n".join(lines).encode())),
                                   purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                    completion_window="24h")
    batch = wait_done(client, created.id)
    assert batch.status == "completed" and batch.output_file_id
    from openai.types import CreateEmbeddingResponse

    for raw in client.files.content(batch.output_file_id).text.splitlines():
        body = CreateEmbeddingResponse.model_validate(json.loads(raw)["response"]["body"])
        assert len(body.data[0].embedding) == 16 and body.usage.prompt_tokens > 0


def test_azure_dated_file_list_pages_to_the_end_without_cursors(
    start_server: StartServer,
) -> None:
    client = client_for(start_server("azure"), "azure")
    ids = [client.files.create(file=(f"f{i}.jsonl", io.BytesIO(requests_file(1))),
                               purpose="batch").id for i in range(3)]
    assert [f.id for f in client.files.list()] == ids[::-1]
