"""A batch's life: statuses, timestamps, counts, output/error files, cancel and expiry."""

from __future__ import annotations

import asyncio
import re

import pytest

from .conftest import MakeApi, chat_file, jsonl, request_line

pytestmark = pytest.mark.anyio

ORDER = ("created_at", "in_progress_at", "finalizing_at", "completed_at")


@pytest.mark.parametrize("surface", ["openai", "azure", "azure_v1"])
async def test_a_good_batch_completes_with_one_output_line_per_request(
    make_api: MakeApi, surface: str
) -> None:
    api = await make_api(surface)
    batch = await api.run(chat_file(4))
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    stamps = [batch[name] for name in ORDER]
    assert None not in stamps and stamps == sorted(stamps)
    assert batch["failed_at"] is None and batch["errors"] is None
    lines = await api.lines(batch["output_file_id"])
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i}" for i in range(4)]
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert ("id" in line) is (surface == "openai")
    output = (await api.call("GET", f"/files/{batch['output_file_id']}")).json()
    assert output["purpose"] == "batch_output"


async def test_openai_reports_model_usage_and_no_error_file(make_api: MakeApi) -> None:
    api = await make_api("openai")
    batch = await api.run(chat_file(3))
    assert batch["error_file_id"] is None and batch["model"] == "gpt-4o-mini"
    lines = await api.lines(batch["output_file_id"])
    assert all(re.match(r"^batch_req_[0-9a-f]{32}$", line["id"]) for line in lines)
    usage = batch["usage"]
    assert usage["input_tokens"] == sum(
        line["response"]["body"]["usage"]["prompt_tokens"] for line in lines)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize("surface", ["azure", "azure_v1"])
async def test_azure_success_has_an_empty_error_file(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface)
    batch = await api.run(chat_file(2))
    assert batch["error_file_id"]
    content = await api.call("GET", f"/files/{batch['error_file_id']}/content")
    assert content.status_code == 200 and content.content == b""
    assert re.match(r"^file-[0-9a-f-]{36}$", batch["output_file_id"])


@pytest.mark.parametrize("surface", ["openai", "azure"])
async def test_request_level_errors_go_to_the_error_file(make_api: MakeApi,
                                                         surface: str) -> None:
    api = await make_api(surface)
    data = jsonl(
        request_line("ok"),
        request_line("no-messages", body={"model": "gpt-4o-mini"}),
        request_line("boom", body={"model": "gpt-4o-mini", "messages": [{"role": "user",
                                   "content": "x"}], "x_emulator": {"status": 500}}),
    )
    batch = await api.run(data)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    errors = {line["custom_id"]: line for line in await api.lines(batch["error_file_id"])}
    assert errors["no-messages"]["response"]["status_code"] == 400
    assert errors["no-messages"]["response"]["body"]["error"]["param"] == "messages"
    assert errors["boom"]["response"]["status_code"] == 500
    assert all(line["error"] is None for line in errors.values())


async def test_all_failed_still_completes_without_an_output_file(make_api: MakeApi) -> None:
    api = await make_api("openai")
    batch = await api.run(chat_file(3, body={"model": "m"}))
    assert batch["status"] == "completed"
    assert batch["output_file_id"] is None and batch["error_file_id"]
    assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 3}


@pytest.mark.parametrize("surface", ["openai", "azure"])
async def test_invalid_input_fails_the_batch_with_code_and_line(make_api: MakeApi,
                                                                surface: str) -> None:
    api = await make_api(surface)
    batch = await api.run(jsonl(request_line("a"), request_line("a")))
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["errors"]["object"] == "list"
    error = batch["errors"]["data"][0]
    assert (error["code"], error["line"]) == ("duplicate_custom_id", 2)
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    assert batch["in_progress_at"] is None
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}


async def test_too_many_requests_fails_with_too_many_tasks(make_api: MakeApi) -> None:
    api = await make_api("azure", max_requests=2)
    batch = await api.run(chat_file(3))
    assert batch["errors"]["data"][0]["code"] == "too_many_tasks"


async def test_azure_completion_window_other_than_24h_fails_later(make_api: MakeApi) -> None:
    api = await make_api("azure")
    file_id = (await api.upload(chat_file(1))).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/chat/completions",
            "completion_window": "48h"}
    created = await api.call("POST", "/batches", json=body)
    assert created.status_code == 200
    batch = await api.wait(created.json()["id"])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["param"] == "completion_window"


async def test_request_counts_progress_during_in_progress(make_api: MakeApi) -> None:
    api = await make_api("openai", request_latency=0.02)
    batch = await api.wait((await api.submit(chat_file(40)))["id"], {"in_progress"})
    seen: list[int] = []
    while batch["status"] == "in_progress":
        assert batch["request_counts"]["total"] == 40
        seen.append(batch["request_counts"]["completed"])
        await asyncio.sleep(0.02)
        batch = (await api.call("GET", f"/batches/{batch['id']}")).json()
    assert any(0 < count < 40 for count in seen)
    assert seen == sorted(seen)
    assert (await api.wait(batch["id"]))["request_counts"]["completed"] == 40


@pytest.mark.parametrize("surface", ["openai", "azure"])
async def test_cancel_mid_run_keeps_partial_output_and_lists_the_rest(
    make_api: MakeApi, surface: str
) -> None:
    api = await make_api(surface, request_latency=0.02, cancel_grace=0.2)
    batch = await api.submit(chat_file(200))
    running = await api.wait(batch["id"], {"in_progress"})
    while running["request_counts"]["completed"] < 3:
        running = (await api.call("GET", f"/batches/{batch['id']}")).json()
    assert running["status"] == "in_progress"
    cancelling = (await api.call("POST", f"/batches/{batch['id']}/cancel")).json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    done = await api.wait(batch["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"] >= done["cancelling_at"]
    counts = done["request_counts"]
    assert counts["total"] == 200 and counts["completed"] + counts["failed"] == 200
    assert 0 < counts["completed"] < 200
    ok = await api.lines(done["output_file_id"])
    failed = await api.lines(done["error_file_id"])
    assert len(ok) == counts["completed"] and len(failed) == counts["failed"]
    assert {line["error"]["code"] for line in failed} == {"batch_cancelled"}
    assert all(line["response"] is None for line in failed)
    assert {x["custom_id"] for x in ok} | {x["custom_id"] for x in failed} == {
        f"req-{i}" for i in range(200)}


async def test_cancel_while_validating_ends_cancelled_without_files(make_api: MakeApi) -> None:
    api = await make_api("openai", validation_delay=30)
    batch = await api.submit(chat_file(3))
    await api.call("POST", f"/batches/{batch['id']}/cancel")
    done = await api.wait(batch["id"])
    assert done["status"] == "cancelled"
    assert done["output_file_id"] is None and done["error_file_id"] is None


async def test_openai_batches_expire_with_partial_results(make_api: MakeApi) -> None:
    api = await make_api("openai", request_latency=0.02, completion_window=0.3)
    batch = await api.run(chat_file(100))
    assert batch["status"] == "expired" and batch["expired_at"] is not None
    counts = batch["request_counts"]
    assert counts["completed"] + counts["failed"] == 100 and counts["completed"] < 100
    failed = await api.lines(batch["error_file_id"])
    assert {line["error"]["code"] for line in failed} == {"batch_expired"}
    assert failed[0]["error"]["message"] == (
        "This request could not be executed before the completion window expired.")


async def test_azure_batches_never_expire(make_api: MakeApi) -> None:
    api = await make_api("azure", request_latency=0.01, completion_window=0.05)
    batch = await api.run(chat_file(20))
    assert batch["status"] == "completed"
    assert batch["request_counts"]["completed"] == 20


@pytest.mark.parametrize("endpoint", ["/v1/embeddings", "/v1/responses", "/v1/completions"])
async def test_other_endpoints_produce_their_own_bodies(make_api: MakeApi,
                                                        endpoint: str) -> None:
    api = await make_api("openai", embedding_dimensions=4)
    key = "prompt" if endpoint == "/v1/completions" else "input"
    data = jsonl(*(request_line(f"r{i}", url=endpoint, body={"model": "m", key: f"text {i}"})
                   for i in range(2)))
    batch = await api.run(data, endpoint=endpoint)
    body = (await api.lines(batch["output_file_id"]))[0]["response"]["body"]
    expected = {"/v1/embeddings": "list", "/v1/responses": "response",
                "/v1/completions": "text_completion"}[endpoint]
    assert body["object"] == expected


async def test_running_batches_takes_batches_in_arrival_order(make_api: MakeApi) -> None:
    api = await make_api("openai", running_batches=1, request_latency=0.01)
    first = await api.submit(chat_file(20))
    second = await api.submit(chat_file(20))
    # Until the first batch has run all its requests, the second waits in validating.
    while True:
        with api.emulator.store.lock:
            a = api.emulator.store.batches[first["id"]]
            b = api.emulator.store.batches[second["id"]]
            states = (a.completed, b.status, b.completed)
        if states[0] == 20:
            break
        assert states[1:] == ("validating", 0), states
        await asyncio.sleep(0.005)
    done = await api.wait(second["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 20


async def test_a_batch_waiting_for_a_lane_can_be_cancelled(make_api: MakeApi) -> None:
    api = await make_api("openai", running_batches=1, request_latency=30)
    busy = await api.submit(chat_file(3))
    await api.wait(busy["id"], {"in_progress"})
    queued = await api.submit(chat_file(3))
    await api.call("POST", f"/batches/{queued['id']}/cancel")
    done = await api.wait(queued["id"])
    assert done["status"] == "cancelled" and done["in_progress_at"] is None
    assert done["output_file_id"] is None and done["error_file_id"] is None
    assert (await api.call("GET", f"/batches/{busy['id']}")).json()["status"] == "in_progress"
    await api.call("POST", f"/batches/{busy['id']}/cancel")
    ended = await api.wait(busy["id"])
    assert ended["status"] == "cancelled"
    assert ended["request_counts"]["completed"] + ended["request_counts"]["failed"] == 3


async def test_request_latency_changed_on_a_live_emulator_applies_to_a_running_batch(
    make_api: MakeApi,
) -> None:
    api = await make_api("openai", request_latency=0.1)
    batch = await api.wait((await api.submit(chat_file(300)))["id"], {"in_progress"})
    api.emulator.config.request_latency = 0.0  # 300 x 0.1 s would outlast the 10 s wait
    done = await api.wait(batch["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 300
