"""The SDK's server path: ``custom_llm_provider="anthropic"`` with ``server_url=`` goes to
`batchyard serve` under ``/anthropic/v1`` (a real worker, an emulated Anthropic deployment,
PostgreSQL + Redis)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import batchyard
from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.errors import ProviderRejectedError
from tests.integration.test_api.conftest import MASTER, ApiServer, WorkerProcess, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

KEY = "sk-ant-sdk-server"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture()
def served(make_settings: Callable[..., Settings], isolated_database: str,
           tmp_path: Path) -> Iterator[tuple[dict[str, Any], EmulatorServer, WorkerProcess]]:
    config = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), validation_delay=0.05,
                            finalize_delay=0.0, cancel_grace=0.05)
    with EmulatorServer(config) as emulator:
        path = tmp_path / "config.yaml"
        path.write_text(f"""model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_key: {KEY}
      api_base: {emulator.base_url}
""")
        settings = make_settings(database_url=isolated_database, config_file=path)
        with WorkerProcess(settings) as worker, ApiServer(create_app(settings)) as server:
            options = {"custom_llm_provider": "anthropic", "server_url": server.base_url,
                       "api_key": MASTER, "settings": Settings(data_dir=tmp_path / "client")}
            yield options, emulator, worker


def _line(n: int) -> str:
    return json.dumps({"custom_id": f"s-{n}", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "claude", "max_tokens": 32,
                                "messages": [{"role": "user", "content": f"server {n}"}]}})


def _native(n: int) -> str:
    return json.dumps({"custom_id": f"m-{n}", "method": "POST", "url": "/v1/messages",
                       "body": {"model": "claude", "max_tokens": 32,
                                "messages": [{"role": "user", "content": f"native {n}"}]}})


def test_sdk_goes_through_the_anthropic_routes_of_a_server(
        served: tuple[dict[str, Any], EmulatorServer, WorkerProcess]) -> None:
    options, emulator, worker = served
    data = ("\n".join(_line(n) for n in range(3)) + "\n").encode()
    uploaded = batchyard.create_file(file=("server.jsonl", data), **options)
    assert uploaded.id.startswith("file-") and not uploaded.id.startswith("file-anthropic-")
    assert batchyard.file_content(file_id=uploaded.id, **options).content == data
    created = batchyard.create_batch(input_file_id=uploaded.id, metadata={"via": "sdk"},
                                     **options)
    assert created.status == "validating" and created.metadata == {"via": "sdk"}

    def finished() -> Any:
        batch = batchyard.retrieve_batch(batch_id=created.id, **options)
        return batch if batch.status in TERMINAL else None
    try:
        done = wait_for(finished, timeout=120, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.log()}") from None
    assert done.status == "completed" and done.output_file_id
    assert done.request_counts is not None and done.request_counts.completed == 3
    lines = batchyard.file_content(file_id=done.output_file_id, **options).json_lines()
    assert sorted(line["custom_id"] for line in lines) == ["s-0", "s-1", "s-2"]
    for line in lines:
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        n = line["custom_id"].removeprefix("s-")
        assert body["choices"][0]["message"]["content"].endswith(f"server {n}")
    assert [b["request_count"] for b in emulator.emulator.stats()["batches"]] == [3]
    assert created.id in [b.id for b in batchyard.list_batches(limit=10, **options).data]

    # /v1/messages lines are taken only where the prefix forces Anthropic.
    native = ("\n".join(_native(n) for n in range(2)) + "\n").encode()
    kept = batchyard.create_file(file=("native.jsonl", native), **options)
    ok = batchyard.create_batch(input_file_id=kept.id, endpoint="/v1/messages", **options)
    assert ok.endpoint == "/v1/messages"
    as_openai = {**options, "custom_llm_provider": "openai"}
    with pytest.raises(ProviderRejectedError):
        batchyard.create_batch(input_file_id=kept.id, endpoint="/v1/messages", **as_openai)
    cancelled = batchyard.cancel_batch(batch_id=ok.id, **options)
    assert cancelled.status in {"cancelling", "cancelled", "completed"}
