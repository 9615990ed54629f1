"""Fault injection: call-level faults, per-request faults, quota, and the admin routes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import MakeApi, chat_file, jsonl, request_line

pytestmark = pytest.mark.anyio


async def test_rate_limit_answers_429_with_retry_after_then_recovers(make_api: MakeApi) -> None:
    api = await make_api("openai", rate_limit_next=2, retry_after=0.5)
    for _ in range(2):
        limited = await api.call("GET", "/files")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "0.5"
        assert limited.headers["retry-after-ms"] == "500"
        error = limited.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert (await api.call("GET", "/files")).status_code == 200


@pytest.mark.parametrize("surface", ["azure", "azure_v1"])
async def test_azure_429_uses_code_429(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface, rate_limit_next=1, retry_after=3)
    limited = await api.call("GET", "/files")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "429"
    assert "retry after 3 seconds" in limited.json()["error"]["message"]


@pytest.mark.parametrize(("surface", "code"), [("openai", None), ("azure", "internalFailure")])
async def test_server_errors_are_500_in_the_surfaces_envelope(
    make_api: MakeApi, surface: str, code: str | None
) -> None:
    api = await make_api(surface, server_error_next=1)
    failed = await api.call("GET", "/files")
    assert failed.status_code == 500 and failed.json()["error"]["code"] == code
    assert (await api.call("GET", "/files")).status_code == 200


async def test_faults_can_target_one_method_and_path(make_api: MakeApi) -> None:
    api = await make_api("openai", server_error_next=1, fault_path="/batches",
                         fault_method="POST")
    file_id = (await api.upload(chat_file(1))).json()["id"]
    assert (await api.call("GET", "/batches")).status_code == 200
    assert (await api.create(file_id)).status_code == 500
    assert (await api.create(file_id)).status_code == 200
    assert api.emulator.stats()["batches_created"] == 1


async def test_a_dropped_call_breaks_the_connection_and_changes_nothing(
    make_api: MakeApi,
) -> None:
    api = await make_api("openai", drop_next=1, fault_path="/batches")
    file_id = (await api.upload(chat_file(1))).json()["id"]
    with pytest.raises(httpx.RemoteProtocolError):
        await api.create(file_id)
    assert api.emulator.stats()["batches_created"] == 0


async def test_a_drop_after_handling_loses_only_the_answer(make_api: MakeApi) -> None:
    api = await make_api("openai", drop_next=1, drop_after_handling=True, fault_path="/batches")
    file_id = (await api.upload(chat_file(1))).json()["id"]
    with pytest.raises(httpx.RemoteProtocolError):
        await api.create(file_id)
    assert api.emulator.stats()["batches_created"] == 1


async def test_slow_calls_still_answer_and_use_up_the_knob(make_api: MakeApi) -> None:
    api = await make_api("openai", slow_next=1, slow_delay=0.05)
    assert (await api.call("GET", "/files")).status_code == 200
    knobs = (await api.client.get("/_emulator/faults")).json()
    assert knobs["slow_next"] == 0


async def test_x_emulator_marker_fails_n_times_then_succeeds(make_api: MakeApi) -> None:
    api = await make_api("openai")
    marker = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
              "x_emulator": {"status": 503, "times": 1}}
    data = jsonl(request_line("flaky", body=marker), request_line("fine"))
    first = await api.run(data)
    assert first["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    line = (await api.lines(first["error_file_id"]))[0]
    assert (line["custom_id"], line["response"]["status_code"]) == ("flaky", 503)
    second = await api.run(jsonl(request_line("flaky", body=marker)))
    assert second["request_counts"]["completed"] == 1


async def test_x_emulator_without_times_fails_every_time(make_api: MakeApi) -> None:
    api = await make_api("openai")
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "x_emulator": {"status": 400}}
    for _ in range(2):
        batch = await api.run(jsonl(request_line("bad", body=body)))
        assert batch["request_counts"]["failed"] == 1


async def test_x_emulator_request_timeout_is_a_non_http_error(make_api: MakeApi) -> None:
    api = await make_api("openai")
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "x_emulator": {"error": "request_timeout"}}
    batch = await api.run(jsonl(request_line("slow", body=body)))
    line = (await api.lines(batch["error_file_id"]))[0]
    assert line["response"] is None and line["error"]["code"] == "request_timeout"


async def test_failure_rate_is_deterministic_and_transient_failures_heal(
    make_api: MakeApi,
) -> None:
    api = await make_api("openai", request_failure_rate=0.5, request_failure_status=500)
    first = await api.run(chat_file(40))
    failed = {line["custom_id"] for line in await api.lines(first["error_file_id"])}
    assert 0 < len(failed) < 40
    retry = jsonl(*(request_line(custom_id) for custom_id in sorted(failed)))
    second = await api.run(retry)
    assert second["request_counts"] == {"total": len(failed), "completed": len(failed),
                                        "failed": 0}
    other = await make_api("openai", request_failure_rate=0.5, request_failure_status=500)
    again = await other.run(chat_file(40))
    assert {line["custom_id"] for line in await other.lines(again["error_file_id"])} == failed


async def test_permanent_failure_rate_fails_on_retry_too(make_api: MakeApi) -> None:
    api = await make_api("openai", request_failure_rate=1.0, request_failure_status=400)
    for _ in range(2):
        assert (await api.run(chat_file(2)))["request_counts"]["failed"] == 2


async def test_enqueued_token_quota_fails_validation_while_another_batch_holds_it(
    make_api: MakeApi,
) -> None:
    api = await make_api("openai", request_latency=0.01)
    holder = await api.submit(chat_file(50))
    running = await api.wait(holder["id"], {"in_progress"})
    assert running["status"] == "in_progress"
    api.emulator.set_faults(enqueued_token_quota=api.emulator.store.enqueued_tokens(
        "gpt-4o-mini") + 5)
    blocked = await api.run(chat_file(3))
    assert blocked["status"] == "failed"
    error = blocked["errors"]["data"][0]
    assert (error["code"], error["line"], error["param"]) == ("token_limit_exceeded", None, None)
    assert "gpt-4o-mini" in error["message"]
    assert (await api.wait(holder["id"]))["status"] == "completed"
    assert (await api.run(chat_file(3)))["status"] == "completed"  # the quota is free again


async def test_azure_fail_fast_quota_refuses_the_create(make_api: MakeApi) -> None:
    api = await make_api("azure", enqueued_token_quota=10, azure_fail_fast_quota=True)
    file_id = (await api.upload(chat_file(5))).json()["id"]
    refused = await api.create(file_id)
    assert refused.status_code == 400
    assert "token_limit_exceeded" in refused.json()["error"]["message"]
    assert api.emulator.stats()["batches_created"] == 0


async def test_a_batch_can_complete_without_an_output_file(make_api: MakeApi) -> None:
    api = await make_api("openai", no_output_file_next=1)
    batch = await api.run(chat_file(2))
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 2
    assert batch["output_file_id"] is None
    assert (await api.run(chat_file(2)))["output_file_id"] is not None


async def test_new_batches_can_be_404_for_their_first_retrieves(make_api: MakeApi) -> None:
    api = await make_api("openai", not_found_after_create=2, validation_delay=30)
    batch = await api.submit(chat_file(1))
    path = f"/batches/{batch['id']}"
    assert [(await api.call("GET", path)).status_code for _ in range(3)] == [404, 404, 200]


async def test_forced_validation_failure_uses_the_given_code(make_api: MakeApi) -> None:
    api = await make_api("openai", fail_validation_next=1, fail_validation_code="model_not_found")
    failed = await api.run(chat_file(2))
    assert failed["status"] == "failed"
    assert failed["errors"]["data"][0]["code"] == "model_not_found"
    assert (await api.run(chat_file(2)))["status"] == "completed"


async def test_admin_routes_set_faults_report_stats_and_reset(make_api: MakeApi) -> None:
    api = await make_api("openai")
    set_ = await api.client.post("/_emulator/faults", json={"server_error_next": 1})
    assert set_.status_code == 200 and set_.json()["server_error_next"] == 1
    assert (await api.call("GET", "/files")).status_code == 500
    bad = await api.client.post("/_emulator/faults", json={"no_such_knob": 1})
    assert bad.status_code == 400
    await api.upload(chat_file(1), filename="part-9.jsonl")
    stats = (await api.client.get("/_emulator/stats")).json()
    assert stats["files_uploaded"] == 1 and stats["files"][0]["filename"] == "part-9.jsonl"
    await api.client.post("/_emulator/faults", json={"rate_limit_next": 5})
    assert (await api.client.post("/_emulator/reset")).json() == {"reset": True}
    assert (await api.client.get("/_emulator/stats")).json()["files_uploaded"] == 0
    assert (await api.call("GET", "/files")).json()["data"] == []  # faults are back to none


@pytest.mark.parametrize("surface", ["openai", "azure", "azure_v1"])
async def test_lagging_list_shows_new_uploads_and_batches_only_after_the_lag(
        make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface, list_lag=0.4)
    batch = await api.submit(chat_file(1))
    assert (await api.call("GET", f"/batches/{batch['id']}")).status_code == 200
    assert (await api.call("GET", "/batches")).json()["data"] == []
    uploads = {"params": {"purpose": "batch"}}
    assert (await api.call("GET", "/files", **uploads)).json()["data"] == []
    await asyncio.sleep(0.5)
    assert [b["id"] for b in (await api.call("GET", "/batches")).json()["data"]] == [batch["id"]]
    files = (await api.call("GET", "/files", **uploads)).json()["data"]
    assert [f["id"] for f in files] == [batch["input_file_id"]]


@pytest.mark.parametrize(("surface", "status"), [("openai", 503), ("azure_v1", 503)])
async def test_overloaded_answers_with_retry_after(
        make_api: MakeApi, surface: str, status: int) -> None:
    api = await make_api(surface, overloaded_next=1, retry_after=2)
    answer = await api.call("GET", "/files")
    assert answer.status_code == status and answer.headers["retry-after"] == "2"
    assert (await api.call("GET", "/files")).status_code == 200
