"""Acceptance: OpenAI-format JSONL routed to two emulated Anthropic deployments, through
`batchyard serve`, a real worker and the official openai SDK (PostgreSQL + Redis)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.integration.test_api.conftest import MASTER, ApiServer, WorkerProcess, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

KEY = "sk-ant-acceptance"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Stack:
    client: openai.OpenAI
    deployments: list[EmulatorServer]
    worker: WorkerProcess
    base_url: str

    def finished(self, batch_id: str, timeout: float) -> openai.types.Batch:
        def check() -> openai.types.Batch | None:
            batch = self.client.batches.retrieve(batch_id)
            return batch if batch.status in TERMINAL else None
        try:
            return wait_for(check, timeout=timeout, interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.worker.log()}") from None

    def provider_batches(self) -> list[dict[str, Any]]:
        return [b for srv in self.deployments for b in srv.emulator.stats()["batches"]]


def _config(tmp_path: Path, servers: list[EmulatorServer]) -> Path:
    entries = "".join(f"""
  - model_name: claude
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_key: {KEY}
      api_base: {srv.base_url}
    model_info: {{id: claude-{n}}}
""" for n, srv in enumerate(servers))
    path = tmp_path / "config.yaml"
    path.write_text("model_list:" + entries +
                    "batchyard_settings:\n  batch_routing_strategy: round_robin\n")
    return path


@pytest.fixture()
def stack(make_settings: Callable[..., Settings], isolated_database: str,
          tmp_path: Path) -> Iterator[Stack]:
    config = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), validation_delay=0.05,
                            cancel_grace=0.05)
    with EmulatorServer(config) as east, EmulatorServer(config) as west:
        settings = make_settings(database_url=isolated_database,
                                 config_file=_config(tmp_path, [east, west]))
        settings.pipeline = settings.pipeline.model_copy(
            update={"provider_list_lag_seconds": 1.0})
        with WorkerProcess(settings) as worker, ApiServer(create_app(settings)) as server:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=MASTER,
                                   max_retries=2, timeout=600)
            yield Stack(client, [east, west], worker, server.base_url)
            client.close()


def _line(n: int, **body: Any) -> bytes:
    return json.dumps({"custom_id": f"q-{n}", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "claude", "max_tokens": 64, "messages": [
                           {"role": "system", "content": "Answer briefly."},
                           {"role": "user", "content": f"What is {n} squared?"}], **body}},
                      separators=(",", ":")).encode() + b"\n"


@pytest.mark.timeout(1500)
def test_120k_openai_lines_run_on_two_anthropic_deployments(stack: Stack) -> None:
    count = 120_000
    data = b"".join(_line(n) for n in range(count))
    uploaded = stack.client.files.create(file=("claude.jsonl", data), purpose="batch")
    created = stack.client.batches.create(input_file_id=uploaded.id,
                                          endpoint="/v1/chat/completions",
                                          completion_window="24h")
    done = stack.finished(created.id, timeout=1500)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (count, count, 0)
    batches = stack.provider_batches()
    assert sorted(b["request_count"] for b in batches) == [20_000, 50_000, 50_000]
    assert all(srv.emulator.stats()["batches_created"] >= 1 for srv in stack.deployments)
    assert done.output_file_id
    seen = set()
    for raw in stack.client.files.content(done.output_file_id).text.splitlines():
        line = json.loads(raw)
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert body["object"] == "chat.completion"
        choice = body["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
        n = int(line["custom_id"].removeprefix("q-"))
        assert choice["message"]["content"].endswith(f"What is {n} squared?")
        assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                                 + body["usage"]["completion_tokens"])
        seen.add(line["custom_id"])
    assert seen == {f"q-{n}" for n in range(count)}


def test_mixed_failures_retry_what_is_retryable(stack: Stack) -> None:
    markers: dict[int, dict[str, Any]] = {
        1: {"status": 529, "times": 1}, 2: {"status": 500, "times": 1},
        3: {"result": "expired", "times": 1}, 4: {"status": 400},
        5: {"result": "canceled"}}
    data = b"".join(_line(n, **({"x_emulator": markers[n]} if n in markers else {}))
                    for n in range(8))
    uploaded = stack.client.files.create(file=("mixed.jsonl", data), purpose="batch")
    created = stack.client.batches.create(input_file_id=uploaded.id,
                                          endpoint="/v1/chat/completions",
                                          completion_window="24h")
    done = stack.finished(created.id, timeout=300)
    assert done.status == "completed", done
    assert done.output_file_id and done.error_file_id
    ok = {json.loads(raw)["custom_id"]
          for raw in stack.client.files.content(done.output_file_id).text.splitlines()}
    failed = {json.loads(raw)["custom_id"]: json.loads(raw)
              for raw in stack.client.files.content(done.error_file_id).text.splitlines()}
    assert ok == {"q-0", "q-1", "q-2", "q-3", "q-6", "q-7"}  # 529, 500, expired retried
    assert set(failed) == {"q-4", "q-5"}
    assert failed["q-4"]["response"]["status_code"] == 400
    assert failed["q-5"]["error"]["code"] == "batch_cancelled"
    # The first part, then retry parts of the three retryable lines. Each emulated deployment
    # counts a line's attempts on its own, so a retry routed to the other one fails once more.
    counts = sorted(b["request_count"] for b in stack.provider_batches())
    assert counts[-1] == 8 and set(counts[:-1]) == {3} and 1 <= len(counts) - 1 <= 2


def test_native_messages_lines_through_the_anthropic_routes(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/anthropic/v1", api_key=MASTER,
                           max_retries=0)
    lines = [{"custom_id": f"n{i}", "method": "POST", "url": "/v1/messages",
              "body": {"model": "claude", "max_tokens": 30, "top_k": 5,
                       "messages": [{"role": "user", "content": f"native {i}"}]}}
             for i in range(3)]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    uploaded = client.files.create(file=("native.jsonl", data), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/messages",
                                    completion_window="24h")
    done = Stack(client, stack.deployments, stack.worker, stack.base_url).finished(
        created.id, timeout=300)
    assert done.status == "completed", done
    assert done.output_file_id
    out = [json.loads(raw) for raw in client.files.content(done.output_file_id).text
           .splitlines()]
    assert sorted(line["custom_id"] for line in out) == ["n0", "n1", "n2"]
    for line in out:
        body = line["response"]["body"]
        assert body["type"] == "message" and body["model"] == "claude-haiku-4-5"
        assert body["content"][0]["text"].endswith(line["custom_id"].replace("n", "native "))
    with pytest.raises(openai.BadRequestError):  # only the Anthropic routes take it
        stack.client.batches.create(input_file_id=uploaded.id, endpoint="/v1/messages",
                                    completion_window="24h")
    client.close()
