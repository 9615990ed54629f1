"""Fixtures: the emulator app driven in-process through httpx.ASGITransport.

Batches run on background threads, so they progress between calls whatever the event loop
does; waits poll the batch with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from batchyard.emulator import EmulatorConfig, create_app
from batchyard.emulator.state import Emulator

FAST = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}
TERMINAL = {"completed", "failed", "expired", "cancelled"}

# Where each surface lives and which query it needs.
SURFACES = {
    "openai": ("openai", "/v1", {}),
    "azure": ("azure", "/openai", {"api-version": "2024-10-21"}),
    "azure_v1": ("azure", "/openai/v1", {}),
}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


class Api:
    """A thin client for one surface of an in-process emulator."""

    def __init__(self, client: httpx.AsyncClient, emulator: Emulator, prefix: str,
                 params: dict[str, str]) -> None:
        self.client = client
        self.emulator = emulator
        self.prefix = prefix
        self.params = params

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        params = {**self.params, **kwargs.pop("params", {})}
        return await self.client.request(method, self.prefix + path, params=params, **kwargs)

    async def upload(self, data: bytes, filename: str = "input.jsonl", purpose: str = "batch",
                     **fields: str) -> httpx.Response:
        return await self.call("POST", "/files", files={"file": (filename, data)},
                               data={"purpose": purpose, **fields})

    async def create(self, file_id: str, endpoint: str = "/v1/chat/completions",
                     **extra: Any) -> httpx.Response:
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}
        return await self.call("POST", "/batches", json={**body, **extra})

    async def submit(self, data: bytes, endpoint: str = "/v1/chat/completions",
                     **extra: Any) -> dict[str, Any]:
        upload = await self.upload(data)
        assert upload.status_code in (200, 201), upload.text
        created = await self.create(upload.json()["id"], endpoint, **extra)
        assert created.status_code in (200, 201), created.text
        result: dict[str, Any] = created.json()
        return result

    async def wait(self, batch_id: str, statuses: set[str] = TERMINAL,
                   timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            batch: dict[str, Any] = (await self.call("GET", f"/batches/{batch_id}")).json()
            if batch["status"] in statuses or time.monotonic() > deadline:
                return batch
            await asyncio.sleep(0.01)

    async def run(self, data: bytes, endpoint: str = "/v1/chat/completions",
                  **extra: Any) -> dict[str, Any]:
        batch = await self.submit(data, endpoint, **extra)
        return await self.wait(batch["id"])

    async def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        assert file_id
        content = await self.call("GET", f"/files/{file_id}/content")
        assert content.status_code == 200
        return [orjson.loads(x) for x in content.content.splitlines() if x]


MakeApi = Callable[..., Any]


@pytest.fixture()
async def make_api() -> AsyncIterator[MakeApi]:
    """``await make_api("openai" | "azure" | "azure_v1", **config)`` -> :class:`Api`."""
    opened: list[tuple[httpx.AsyncClient, Emulator]] = []

    async def factory(surface: str = "openai", **config: Any) -> Api:
        flavor, prefix, params = SURFACES[surface]
        app = create_app(EmulatorConfig(flavor=flavor, **{**FAST, **config}))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://emulator.test")
        opened.append((client, app.state.emulator))
        return Api(client, app.state.emulator, prefix, params)

    yield factory
    for client, emulator in opened:
        await client.aclose()
        emulator.close()


def request_line(custom_id: str, *, model: str = "gpt-4o-mini",
                 url: str = "/v1/chat/completions", body: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """One input line (a chat request unless ``body`` says otherwise)."""
    if body is None:
        body = {"model": model, "messages": [{"role": "user", "content": f"Say {custom_id}"}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}


def jsonl(*items: dict[str, Any] | str) -> bytes:
    """Encode lines; strings are written verbatim (for malformed lines)."""
    out = [x if isinstance(x, str) else orjson.dumps(x).decode() for x in items]
    return ("\n".join(out) + "\n").encode()


def chat_file(count: int, **kwargs: Any) -> bytes:
    return jsonl(*(request_line(f"req-{i}", **kwargs) for i in range(count)))
