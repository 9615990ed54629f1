"""Batches endpoints: create checks, shapes, ids, list paging, cancel rules."""

from __future__ import annotations

import re

import pytest

from .conftest import MakeApi, chat_file

pytestmark = pytest.mark.anyio

ALL = ["openai", "azure", "azure_v1"]
BATCH_ID = {"openai": r"^batch_[0-9a-f]{32}$",
            "azure": r"^batch_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}


@pytest.mark.parametrize("surface", ALL)
async def test_create_answers_validating_with_the_right_shape(make_api: MakeApi,
                                                              surface: str) -> None:
    api = await make_api(surface)
    file_id = (await api.upload(chat_file(2))).json()["id"]
    response = await api.create(file_id, metadata={"batchyard_part_id": "part-7"})
    assert response.status_code == 200
    batch = response.json()
    assert re.match(BATCH_ID["openai" if surface == "openai" else "azure"], batch["id"])
    assert (batch["object"], batch["status"], batch["input_file_id"], batch["endpoint"]) == (
        "batch", "validating", file_id, "/v1/chat/completions")
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert batch["expires_at"] == batch["created_at"] + 86400
    assert batch["metadata"] == {"batchyard_part_id": "part-7"}
    assert ("model" in batch) is (surface != "azure")
    stats = api.emulator.stats()
    assert stats["batches"][0]["metadata"] == {"batchyard_part_id": "part-7"}


async def test_azure_preview_create_is_201_with_enqueued_token_headers(make_api: MakeApi) -> None:
    api = await make_api("azure", enqueued_token_quota=10_000)
    file_id = (await api.upload(chat_file(2))).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}
    response = await api.call("POST", "/batches", json=body,
                              params={"api-version": "2025-04-01-preview"})
    assert response.status_code == 201
    assert response.headers["deployment-maximum-enqueued-tokens"] == "10000"


@pytest.mark.parametrize(("change", "param"), [
    ({"endpoint": "/v1/nope"}, "endpoint"),
    ({"completion_window": "48h"}, "completion_window"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"input_file_id": None}, "input_file_id"),
    ({"output_expires_after": {"anchor": "created_at", "seconds": 10}}, "output_expires_after"),
])
async def test_bad_create_bodies_are_400(make_api: MakeApi, change: dict, param: str) -> None:
    api = await make_api("openai")
    file_id = (await api.upload(chat_file(1))).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h", **change}
    response = await api.call("POST", "/batches", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert api.emulator.stats()["batches_created"] == 0


async def test_unknown_input_file_is_404(make_api: MakeApi) -> None:
    api = await make_api("openai")
    response = await api.create("file-missing")
    assert response.status_code == 404
    assert "file-missing" in response.json()["error"]["message"]


async def test_input_file_must_have_purpose_batch(make_api: MakeApi) -> None:
    api = await make_api("openai")
    file_id = (await api.upload(b"{}", filename="x.jsonl", purpose="user_data")).json()["id"]
    assert (await api.create(file_id)).status_code == 400


async def test_azure_accepts_endpoints_without_v1(make_api: MakeApi) -> None:
    api = await make_api("azure")
    batch = await api.run(chat_file(2, url="/chat/completions"), endpoint="/chat/completions")
    assert (batch["status"], batch["request_counts"]["completed"]) == ("completed", 2)


@pytest.mark.parametrize("surface", ["openai", "azure"])
async def test_list_batches_pages_newest_first(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface, validation_delay=30)  # keep them validating
    file_id = (await api.upload(chat_file(1))).json()["id"]
    ids = [(await api.create(file_id)).json()["id"] for _ in range(5)]
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await api.call("GET", "/batches", params=params)).json()
        seen += [b["id"] for b in page["data"]]
        assert page["first_id"] == page["data"][0]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids[::-1]
    default = (await api.call("GET", "/batches")).json()
    assert len(default["data"]) == 5


async def test_list_limit_out_of_range_is_400(make_api: MakeApi) -> None:
    api = await make_api("openai")
    assert (await api.call("GET", "/batches", params={"limit": "101"})).status_code == 400
    assert (await api.call("GET", "/batches", params={"limit": "0"})).status_code == 400


@pytest.mark.parametrize("surface", ALL)
async def test_unknown_batch_is_404_on_retrieve_and_cancel(make_api: MakeApi,
                                                           surface: str) -> None:
    api = await make_api(surface)
    assert (await api.call("GET", "/batches/batch_nope")).status_code == 404
    assert (await api.call("POST", "/batches/batch_nope/cancel")).status_code == 404


@pytest.mark.parametrize("surface", ["openai", "azure"])
async def test_cancel_on_a_terminal_batch_is_400(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface)
    batch = await api.run(chat_file(1))
    assert batch["status"] == "completed"
    response = await api.call("POST", f"/batches/{batch['id']}/cancel")
    assert response.status_code == 400
    if surface == "azure":
        assert response.json()["error"]["code"] == "unexpectedEntityState"


async def test_cancel_twice_returns_the_cancelling_batch(make_api: MakeApi) -> None:
    api = await make_api("openai", validation_delay=30, cancel_grace=30)
    batch = await api.submit(chat_file(1))
    first = (await api.call("POST", f"/batches/{batch['id']}/cancel")).json()
    second = await api.call("POST", f"/batches/{batch['id']}/cancel")
    assert second.status_code == 200
    assert second.json()["status"] == first["status"] == "cancelling"
    assert second.json()["cancelling_at"] == first["cancelling_at"] is not None
