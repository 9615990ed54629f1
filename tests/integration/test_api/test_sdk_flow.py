"""The official openai SDK against `batchyard serve` (uvicorn), real workers and the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import openai
import pytest
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.integration.test_api.conftest import (
    MASTER,
    ApiServer,
    WorkerProcess,
    jsonl,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Stack:
    """batchyard (API + worker) in front of an emulator."""

    client: openai.OpenAI
    emulator: EmulatorServer
    worker: WorkerProcess

    def finished(self, batch_id: str, timeout: float = 90.0) -> openai.types.Batch:
        def check() -> openai.types.Batch | None:
            batch = self.client.batches.retrieve(batch_id)
            return batch if batch.status in TERMINAL else None
        try:
            return wait_for(check, timeout=timeout, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.worker.log()}") from None


@pytest.fixture()
def stack(make_settings: Callable[..., Settings], isolated_database: str) -> Iterator[Stack]:
    config = EmulatorConfig(flavor="openai", validation_delay=0.05, finalize_delay=0.05,
                            cancel_grace=0.1, request_latency=0.02)
    with EmulatorServer(config) as emulator:
        settings = make_settings(database_url=isolated_database,
                                 openai_api_key=SecretStr("sk-emulated"),
                                 openai_api_base=f"{emulator.base_url}/v1")
        with WorkerProcess(settings) as worker, ApiServer(create_app(settings)) as server:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=MASTER,
                                   max_retries=0)
            yield Stack(client, emulator, worker)
            client.close()


def test_the_full_flow_through_the_openai_sdk(stack: Stack) -> None:
    data = jsonl(6)
    uploaded = stack.client.files.create(file=("mydata.jsonl", data), purpose="batch")
    assert (uploaded.object, uploaded.bytes, uploaded.purpose) == ("file", len(data), "batch")

    created = stack.client.batches.create(input_file_id=uploaded.id,
                                          endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"run": "sdk"})
    assert created.status == "validating" and created.metadata == {"run": "sdk"}

    done = stack.finished(created.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (6, 6, 0)
    assert done.output_file_id

    output = stack.client.files.content(done.output_file_id).text
    lines = [json.loads(line) for line in output.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"task-{i}" for i in range(6)]
    assert all(line["response"]["status_code"] == 200 for line in lines)
    assert stack.client.files.content(uploaded.id).content == data

    deleted = stack.client.files.delete(uploaded.id)
    assert deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        stack.client.files.retrieve(uploaded.id)


def test_listing_pages_and_cancelling(stack: Stack) -> None:
    file_id = stack.client.files.create(file=("many.jsonl", jsonl(300)), purpose="batch").id
    created = [stack.client.batches.create(input_file_id=file_id,
                                           endpoint="/v1/chat/completions",
                                           completion_window="24h").id for _ in range(5)]
    first_page = stack.client.batches.list(limit=2)
    assert len(first_page.data) == 2 and first_page.has_more
    listed = list(stack.client.batches.list(limit=2))  # auto-paginates via `after`
    seen = [batch.id for batch in listed]
    assert len(seen) == len(set(seen)) and set(created) <= set(seen)
    stamps = [batch.created_at for batch in listed]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    cancelled = stack.client.batches.cancel(created[0])
    assert cancelled.status == "cancelling"
    final = stack.finished(created[0])
    assert final.status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        stack.client.batches.retrieve("batch_doesnotexist")
