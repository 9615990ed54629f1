"""The SDK with ``custom_llm_provider="anthropic"`` (no server) against the Anthropic-flavor
emulator on a real port: OpenAI-format JSONL in, OpenAI-shaped batches and result lines out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import batchyard
from batchyard.config import HttpSettings, Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.errors import (
    ConfigError,
    InvalidInputError,
    JsonlError,
    ProviderNotFoundError,
    ProviderRejectedError,
    ProviderTransientError,
)

KEY = "sk-ant-sdk"
TERMINAL = {"completed", "failed", "cancelled", "expired"}
FAST: dict[str, Any] = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(flavor="anthropic", api_keys=(KEY,), **FAST)) as server:
        yield server


@pytest.fixture()
def options(emulator: EmulatorServer, tmp_path: Path) -> dict[str, Any]:
    """Keyword arguments for every call: the emulator, and a data dir of the test's own."""
    settings = Settings(data_dir=tmp_path / "data",
                        http=HttpSettings(max_attempts=2, backoff_initial=0.01))
    return {"custom_llm_provider": "anthropic", "api_key": KEY,
            "api_base": emulator.base_url, "settings": settings}


def _line(custom_id: str, question: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "anthropic/claude-haiku-4-5", "max_tokens": 64,
                     "messages": [{"role": "system", "content": "Answer briefly."},
                                  {"role": "user", "content": question}], **body}}


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _wait(fetch: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while (batch := fetch()).status not in TERMINAL:
        assert time.monotonic() < deadline, f"stuck in {batch.status}"
        time.sleep(0.05)
    return batch


def test_openai_jsonl_runs_as_a_message_batch(options: dict[str, Any], tmp_path: Path,
                                              emulator: EmulatorServer) -> None:
    lines = [_line(f"q-{n}", f"What is {n} squared?") for n in range(3)]
    lines.append(_line("bad-request", "Refuse me", x_emulator={"status": 400}))
    jsonl = _write(tmp_path / "claude.jsonl", lines)

    with jsonl.open("rb") as handle:
        kept = batchyard.create_file(file=handle, purpose="batch", **options)
    assert kept.id.startswith("file-anthropic-") and kept.filename == "claude.jsonl"
    assert (kept.object, kept.purpose, kept.bytes) == ("file", "batch", jsonl.stat().st_size)
    assert batchyard.file_retrieve(file_id=kept.id, **options) == kept
    assert [f.id for f in batchyard.file_list(**options).data] == [kept.id]
    assert batchyard.file_content(file_id=kept.id, **options).content == jsonl.read_bytes()

    before = len(emulator.emulator.stats()["batches"])
    created = batchyard.create_batch(completion_window="24h",
                                     endpoint="/v1/chat/completions", input_file_id=kept.id,
                                     metadata={"run": "sdk"}, **options)
    assert created.id.startswith("msgbatch_") and created.status == "in_progress"
    assert (created.endpoint, created.input_file_id, created.metadata,
            created.completion_window) == ("/v1/chat/completions", kept.id, {"run": "sdk"}, "24h")
    assert created.output_file_id is None and created.error_file_id is None
    sent = emulator.emulator.stats()["batches"][before]
    assert (sent["id"], sent["request_count"], sent["model"]) == (
        created.id, 4, "claude-haiku-4-5")

    done = _wait(lambda: batchyard.retrieve_batch(batch_id=created.id, **options))
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (4, 3, 1)
    assert done.metadata == {"run": "sdk"} and done.endpoint == "/v1/chat/completions"
    assert done.output_file_id == f"{created.id}:output"
    assert done.error_file_id == f"{created.id}:errors"

    output = batchyard.file_content(file_id=done.output_file_id, **options).json_lines()
    assert sorted(line["custom_id"] for line in output) == ["q-0", "q-1", "q-2"]
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert (body["object"], body["model"]) == ("chat.completion", "claude-haiku-4-5")
        choice = body["choices"][0]
        assert (choice["finish_reason"], choice["message"]["role"]) == ("stop", "assistant")
        n = line["custom_id"].removeprefix("q-")
        assert choice["message"]["content"].endswith(f"What is {n} squared?")
        usage = body["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    errors = batchyard.file_content(file_id=done.error_file_id, **options).json_lines()
    assert [line["custom_id"] for line in errors] == ["bad-request"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["type"] == "invalid_request_error"

    assert batchyard.file_delete(file_id=kept.id, **options).deleted is True
    with pytest.raises(ProviderNotFoundError):
        batchyard.file_retrieve(file_id=kept.id, **options)
    assert batchyard.retrieve_batch(batch_id=created.id, **options).input_file_id == kept.id


def test_bad_line_is_refused_with_its_number(options: dict[str, Any], tmp_path: Path) -> None:
    lines = [json.dumps(_line("ok", "fine")), json.dumps(_line("two", "x", n=2))]
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(JsonlError, match=r"line 2: cannot be sent to Anthropic: n > 1") as caught:
        batchyard.create_file(file=jsonl, **options)
    assert (caught.value.line, caught.value.code, caught.value.param) == (2, "untranslatable", "n")

    jsonl.write_text(lines[0] + "\n\n{not json\n")
    with pytest.raises(JsonlError, match="line 3: not valid JSON"):
        batchyard.create_file(file=jsonl, **options)
    jsonl.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(JsonlError, match="line 2: custom_id 'ok' is used twice"):
        batchyard.create_file(file=jsonl, **options)
    jsonl.write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no requests in the file"):
        batchyard.create_file(file=jsonl, **options)
    assert batchyard.file_list(**options).data == []  # nothing kept
    with pytest.raises(InvalidInputError, match="no requests in the requests list"):
        batchyard.create_batch(requests=[], **options)

    with pytest.raises(JsonlError, match="line 2: custom_id must be a non-empty string"):
        batchyard.create_batch(requests=[{"custom_id": "a", "params": {}}, {"params": {}}],
                               **options)
    with pytest.raises(InvalidInputError, match="not /v1/embeddings"):
        batchyard.create_batch(endpoint="/v1/embeddings", requests=[], **options)
    with pytest.raises(InvalidInputError, match="either input_file_id or requests"):
        batchyard.create_batch(**options)
    with pytest.raises(InvalidInputError, match="requests= is for custom_llm_provider"):
        batchyard.create_batch(requests=[{"custom_id": "a", "params": {}}],
                               **{**options, "custom_llm_provider": "openai"})


def test_native_requests_list_with_paging_and_cancel(options: dict[str, Any],
                                                     tmp_path: Path) -> None:
    native = [{"custom_id": f"n-{n}", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 32,
        "messages": [{"role": "user", "content": f"native {n}"}]}} for n in range(2)]
    messages = batchyard.create_batch(endpoint="/v1/messages", requests=native, **options)
    assert messages.endpoint == "/v1/messages"
    chat = batchyard.create_batch(requests=native, **options)  # endpoint: chat completions
    failing = [*native, {"custom_id": "fails", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 32,
        "messages": [{"role": "user", "content": "fails"}],
        "x_emulator": {"status": 500}}}]
    third = batchyard.create_batch(endpoint="/v1/messages", requests=failing, **options)
    created = [messages.id, chat.id, third.id]

    first = batchyard.list_batches(limit=2, **options)
    assert first.object == "list" and len(first.data) == 2 and first.has_more is True
    assert [b.id for b in first.data] == created[::-1][:2]
    rest = batchyard.list_batches(after=first.data[-1].id, limit=100, **options)
    assert messages.id in [b.id for b in rest.data]
    listed = {b.id: b for b in [*first.data, *rest.data]}
    assert listed[chat.id].endpoint == "/v1/chat/completions"

    done = _wait(lambda: batchyard.retrieve_batch(batch_id=messages.id, **options))
    bodies = batchyard.file_content(file_id=done.output_file_id, **options).json_lines()
    assert sorted(b["custom_id"] for b in bodies) == ["n-0", "n-1"]
    assert {b["response"]["body"]["type"] for b in bodies} == {"message"}  # native bodies
    chat_done = _wait(lambda: batchyard.retrieve_batch(batch_id=chat.id, **options))
    chat_lines = batchyard.file_content(file_id=chat_done.output_file_id, **options)
    assert {line["response"]["body"]["object"] for line in chat_lines.json_lines()} == {
        "chat.completion"}

    ended = _wait(lambda: batchyard.retrieve_batch(batch_id=third.id, **options))
    assert ended.request_counts is not None
    assert (ended.request_counts.total, ended.request_counts.failed) == (3, 1)
    failed = batchyard.file_content(file_id=ended.error_file_id or "", **options).json_lines()
    assert [(f["custom_id"], f["response"]["status_code"]) for f in failed] == [("fails", 500)]
    assert failed[0]["response"]["body"]["type"] == "error"  # native error body
    with pytest.raises(ProviderRejectedError, match="cannot be canceled"):
        batchyard.cancel_batch(batch_id=third.id, **options)


def test_cancel_gives_partial_results_as_error_lines(tmp_path: Path) -> None:
    config = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), validation_delay=0.0,
                            finalize_delay=0.0, cancel_grace=0.2, request_latency=0.05)
    with EmulatorServer(config) as server:
        options: dict[str, Any] = {"custom_llm_provider": "anthropic", "api_key": KEY,
                                   "api_base": server.base_url,
                                   "settings": Settings(data_dir=tmp_path)}
        jsonl = _write(tmp_path / "many.jsonl",
                       [_line(f"c-{n}", f"question {n}") for n in range(40)])
        kept = batchyard.create_file(file=jsonl, **options)
        created = batchyard.create_batch(input_file_id=kept.id, **options)
        cancelling = batchyard.cancel_batch(batch_id=created.id, **options)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        ended = _wait(lambda: batchyard.retrieve_batch(batch_id=created.id, **options))
        assert ended.status == "cancelled" and ended.cancelled_at is not None
        assert ended.error_file_id == f"{created.id}:errors"
        errors = batchyard.file_content(file_id=ended.error_file_id, **options).json_lines()
        assert errors and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
        done: list[str] = []
        if ended.output_file_id:
            done = [line["custom_id"] for line in batchyard.file_content(
                file_id=ended.output_file_id, **options).json_lines()]
        assert sorted(done + [e["custom_id"] for e in errors]) == sorted(
            f"c-{n}" for n in range(40))


@pytest.mark.anyio
async def test_async_flow(options: dict[str, Any], tmp_path: Path) -> None:
    jsonl = _write(tmp_path / "async.jsonl", [_line(f"a-{n}", f"async {n}") for n in range(2)])
    kept = await batchyard.acreate_file(file=jsonl, **options)
    assert (await batchyard.afile_retrieve(file_id=kept.id, **options)).id == kept.id
    assert [f.id for f in (await batchyard.afile_list(**options)).data] == [kept.id]
    created = await batchyard.acreate_batch(input_file_id=kept.id, **options)
    page = await batchyard.alist_batches(limit=1, **options)
    assert [b.id for b in page.data] == [created.id]
    deadline = time.monotonic() + 20
    while (done := await batchyard.aretrieve_batch(batch_id=created.id, **options)).status \
            not in TERMINAL:
        assert time.monotonic() < deadline
        await anyio.sleep(0.05)
    assert done.status == "completed" and done.output_file_id
    lines = (await batchyard.afile_content(file_id=done.output_file_id, **options)).json_lines()
    assert sorted(line["custom_id"] for line in lines) == ["a-0", "a-1"]
    with pytest.raises(ProviderRejectedError):  # an ended batch cannot be cancelled
        await batchyard.acancel_batch(batch_id=created.id, **options)
    assert (await batchyard.afile_delete(file_id=kept.id, **options)).deleted is True


def test_env_supplies_anthropic_credentials(monkeypatch: pytest.MonkeyPatch,
                                            emulator: EmulatorServer, tmp_path: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_BASE", emulator.base_url)
    monkeypatch.setenv("BATCHYARD_DATA_DIR", str(tmp_path))
    batch = batchyard.create_batch(custom_llm_provider="anthropic", requests=[
        {"custom_id": "env", "params": {"model": "claude-haiku-4-5", "max_tokens": 8,
                                        "messages": [{"role": "user", "content": "hi"}]}}])
    got = batchyard.retrieve_batch(batch_id=batch.id, custom_llm_provider="anthropic")
    assert got.id == batch.id and got.endpoint == "/v1/chat/completions"
    for name in ("ANTHROPIC_API_KEY", "BATCHYARD_ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        batchyard.retrieve_batch(batch_id=batch.id, custom_llm_provider="anthropic")


def _faulty(tmp_path: Path, **faults: Any) -> tuple[EmulatorServer, dict[str, Any]]:
    config = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), fault_method="POST",
                            fault_path="/v1/messages/batches", retry_after=0.01,
                            **FAST, **faults)
    server = EmulatorServer(config).start()
    settings = Settings(data_dir=tmp_path, http=HttpSettings(max_attempts=3,
                                                             backoff_initial=0.01))
    return server, {"custom_llm_provider": "anthropic", "api_key": KEY,
                    "api_base": server.base_url, "settings": settings}


ONE = [{"custom_id": "one", "params": {"model": "claude-haiku-4-5", "max_tokens": 8,
                                       "messages": [{"role": "user", "content": "hi"}]}}]


def test_a_refused_create_is_sent_again(tmp_path: Path) -> None:
    server, options = _faulty(tmp_path, rate_limit_next=1, overloaded_next=1)
    try:
        created = batchyard.create_batch(requests=ONE, **options)
        assert [b["id"] for b in server.emulator.stats()["batches"]] == [created.id]
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_create_whose_answer_is_lost_is_not_sent_twice(tmp_path: Path) -> None:
    server, options = _faulty(tmp_path, drop_next=1, drop_after_handling=True)
    try:
        with pytest.raises(ProviderTransientError):
            await batchyard.acreate_batch(requests=ONE, **options)
        assert len(server.emulator.stats()["batches"]) == 1  # created once, not paid twice
    finally:
        server.stop()


def test_an_expired_batch_gives_expired_error_lines(tmp_path: Path) -> None:
    server, options = _faulty(tmp_path, completion_window=0.3, request_latency=0.05)
    try:
        requests = [{"custom_id": f"e-{n}", "params": ONE[0]["params"]} for n in range(30)]
        created = batchyard.create_batch(requests=requests, **options)
        ended = _wait(lambda: batchyard.retrieve_batch(batch_id=created.id, **options))
        assert ended.status == "expired" and ended.expired_at is not None
        assert ended.error_file_id == f"{created.id}:errors"
        errors = batchyard.file_content(file_id=ended.error_file_id, **options).json_lines()
        assert errors and {e["error"]["code"] for e in errors} == {"batch_expired"}
        done = []
        if ended.output_file_id:
            done = batchyard.file_content(file_id=ended.output_file_id, **options).json_lines()
        assert sorted([e["custom_id"] for e in errors] + [d["custom_id"] for d in done]) == \
            sorted(r["custom_id"] for r in requests)
    finally:
        server.stop()
