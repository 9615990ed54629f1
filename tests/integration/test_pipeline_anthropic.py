"""OpenAI-format batches routed to Anthropic deployments, through the pipeline services
(inline, no Celery) against the emulator's Anthropic flavor on a real port."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.providers import ProviderConfig, build_anthropic_provider
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from tests.e2e.helpers import InlineDriver, fast_settings, jsonl, results_by_custom_id, upload

KEY = "sk-ant-pipeline"


def chat_line(custom_id: str, text: str = "hello", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "claude", "messages": [{"role": "user", "content": text}],
                     **body}}


@pytest.fixture()
def claude() -> Iterator[EmulatorServer]:
    cfg = EmulatorConfig(flavor="anthropic", api_keys=(KEY,), validation_delay=0.0,
                         cancel_grace=0.0)
    with EmulatorServer(cfg) as srv:
        yield srv


def config_yaml(tmp_path: Path, base_url: str) -> Path:
    entries = "".join(f"""
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: {KEY}
      api_base: {base_url}
    model_info:
      id: claude-{name}
""" for name in ("east", "west"))
    path = tmp_path / "config.yaml"
    path.write_text("model_list:" + entries + "batchyard_settings:\n"
                    "  batch_routing_strategy: round_robin\n")
    return path


@pytest.fixture()
def driver(tmp_path: Path, claude: EmulatorServer) -> Iterator[InlineDriver]:
    settings = fast_settings(tmp_path, emulator_url="http://127.0.0.1:9")
    settings = settings.model_copy(update={
        "config_file": config_yaml(tmp_path, claude.base_url), "openai_api_key": None})
    migrate.upgrade(settings.effective_database_url)
    inline = InlineDriver(settings)
    yield inline
    inline.svc.close()


def status(driver: InlineDriver, batch_id: str) -> str:
    return batch_service.get_batch(driver.svc, batch_id, owner=None).status


def submit(driver: InlineDriver, lines: list[dict[str, Any]]) -> str:
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    return batch.id


def parts(driver: InlineDriver, batch_id: str) -> list[dict[str, Any]]:
    with driver.svc.engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.text(
            "SELECT id, status, deployment, provider_batch_id, request_count, last_error "
            "FROM parts WHERE batch_id = :b ORDER BY seq"), {"b": batch_id}).mappings()]


def output_lines(driver: InlineDriver, batch_id: str) -> list[dict[str, Any]]:
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    assert final.output_file_id is not None
    content = b"".join(file_service.iter_file_content(driver.svc, final.output_file_id,
                                                      owner=None))
    return [orjson.loads(line) for line in content.splitlines()]


def test_chat_lines_run_on_two_anthropic_deployments_and_come_back_openai_shaped(
        driver: InlineDriver, claude: EmulatorServer) -> None:
    lines = [chat_line(f"req-{i}", f"question {i}", max_tokens=200) for i in range(10)]
    lines[0]["body"]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    batch_id = submit(driver, lines)
    driver.run_until(lambda: status(driver, batch_id) == "completed")
    stats = claude.emulator.stats()
    assert stats["batches_created"] == 3  # 10 lines, 4 per part
    assert sorted(b["request_count"] for b in stats["batches"]) == [2, 4, 4]
    assert {b["model"] for b in stats["batches"]} == {"claude-sonnet-4-5"}
    assert {p["deployment"] for p in parts(driver, batch_id)} == {"claude-east", "claude-west"}
    out = {line["custom_id"]: line for line in output_lines(driver, batch_id)}
    assert sorted(out) == sorted(f"req-{i}" for i in range(10))
    for i in range(10):
        response = out[f"req-{i}"]["response"]
        body = response["body"]
        assert response["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["choices"][0]["message"]["content"].endswith(f"question {i}")
        assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    assert (final.request_counts.total, final.request_counts.completed) == (10, 10)


def test_an_untranslatable_line_fails_the_batch_with_its_number_before_any_send(
        driver: InlineDriver, claude: EmulatorServer) -> None:
    lines = [chat_line("a"), chat_line("b"), chat_line("c", n=2)]
    batch_id = submit(driver, lines)
    driver.run_until(lambda: status(driver, batch_id) == "failed")
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    assert final.errors is not None
    error = final.errors.data[0]
    assert (error.line, error.code) == (3, "untranslatable") and "n > 1" in str(error.message)
    assert claude.emulator.stats()["batches_created"] == 0


def test_mixed_failures_retry_what_is_retryable(
        driver: InlineDriver, claude: EmulatorServer) -> None:
    lines = [chat_line("fine"),
             chat_line("flaky", x_emulator={"status": 529, "times": 1}),
             chat_line("late", x_emulator={"result": "expired", "times": 1}),
             chat_line("refused", x_emulator={"status": 400}),
             chat_line("stopped", x_emulator={"result": "canceled"})]
    batch_id = submit(driver, lines)
    driver.run_until(lambda: status(driver, batch_id) == "completed")
    rows = results_by_custom_id(driver.svc.engine, batch_id)
    assert {cid: len(found) for cid, found in rows.items()} == dict.fromkeys(
        ("fine", "flaky", "late", "refused", "stopped"), 1)
    assert rows["fine"][0]["ok"] and rows["flaky"][0]["ok"] and rows["late"][0]["ok"]
    assert rows["flaky"][0]["attempt"] == 2 and rows["late"][0]["attempt"] == 2
    assert (rows["refused"][0]["ok"], rows["refused"][0]["status_code"]) == (False, 400)
    assert rows["refused"][0]["attempt"] == 1
    assert rows["stopped"][0]["error_code"] == "batch_cancelled"
    refused = orjson.loads(rows["refused"][0]["response_body"])
    assert refused["error"]["type"] == "invalid_request_error"
    # Two provider batches: the first part, then one retry part for flaky and late.
    assert [b["request_count"] for b in claude.emulator.stats()["batches"]][-1] == 2


def lose_create_answers(claude: EmulatorServer, count: int, list_lag: float) -> None:
    claude.emulator.set_faults(drop_next=count, drop_after_handling=True,
                               fault_path="/v1/messages/batches", fault_method="POST",
                               list_lag=list_lag)


def with_list_lag(driver: InlineDriver, seconds: float) -> None:
    settings = driver.svc.settings
    settings.pipeline = settings.pipeline.model_copy(
        update={"provider_list_lag_seconds": seconds})


@pytest.mark.parametrize(("waits_for_list", "expected_batches"), [(True, 3), (False, 4)])
def test_a_lost_create_is_found_by_count_and_time_even_when_the_list_lags(
        driver: InlineDriver, claude: EmulatorServer, waits_for_list: bool,
        expected_batches: int) -> None:
    # Without waiting out the list's lag, the look-up misses the batch and creates it again:
    # the control case shows the fault is real.
    # The sweep retries a part about stale_seconds (2 s) after the lost answer: the list
    # must lag longer than that for the look-up to miss the batch.
    with_list_lag(driver, 6.0 if waits_for_list else 0.0)
    lose_create_answers(claude, 1, list_lag=4.0)
    batch_id = submit(driver, [chat_line(f"r{i}") for i in range(10)])
    driver.run_until(lambda: status(driver, batch_id) == "completed")
    stats = claude.emulator.stats()
    assert stats["batches_created"] == expected_batches
    rows = results_by_custom_id(driver.svc.engine, batch_id)
    assert {cid: len(found) for cid, found in rows.items()} == {f"r{i}": 1 for i in range(10)}
    owned = [p["provider_batch_id"] for p in parts(driver, batch_id)]
    assert len(set(owned)) == 3
    if waits_for_list:
        firsts = [b["first_custom_id"] for b in stats["batches"]]
        assert sorted(firsts) == ["r0", "r4", "r8"]  # exactly one provider batch per part


def _direct_batch(claude: EmulatorServer, custom_ids: list[str]) -> str:
    """A batch created at the provider behind batchyard's back (same key)."""
    config = ProviderConfig(kind="anthropic", api_key=KEY, api_base=claude.base_url)
    requests = b"".join(orjson.dumps({"custom_id": cid, "params": {
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}})
        + b"\n" for cid in custom_ids)
    with build_anthropic_provider(config) as client:
        return client.create_batch(io.BytesIO(requests)).id


def test_a_same_sized_foreign_batch_is_told_apart_by_its_requests(
        driver: InlineDriver, claude: EmulatorServer) -> None:
    foreign = _direct_batch(claude, ["x0", "x1", "x2"])
    lose_create_answers(claude, 1, list_lag=0.0)
    batch_id = submit(driver, [chat_line(f"r{i}") for i in range(3)])
    driver.run_until(lambda: status(driver, batch_id) == "completed")
    (part,) = parts(driver, batch_id)
    assert part["provider_batch_id"] not in (None, foreign)
    assert claude.emulator.stats()["batches_created"] == 2  # the foreign one and ours
    rows = results_by_custom_id(driver.svc.engine, batch_id)
    assert {cid: len(found) for cid, found in rows.items()} == {"r0": 1, "r1": 1, "r2": 1}


def test_a_part_found_created_twice_is_parked_not_guessed(
        driver: InlineDriver, claude: EmulatorServer) -> None:
    twin = _direct_batch(claude, ["r0", "r1", "r2"])  # the same requests, already sent once
    lose_create_answers(claude, 1, list_lag=0.0)
    batch_id = submit(driver, [chat_line(f"r{i}") for i in range(3)])
    part = driver.run_until(lambda: next(
        (p for p in parts(driver, batch_id) if "ambiguous" in (p["last_error"] or "")), None))
    assert part["status"] == "submitting" and part["provider_batch_id"] is None
    assert twin in part["last_error"]
    assert claude.emulator.stats()["batches_created"] == 2
    with driver.svc.engine.connect() as conn:
        reasons = list(conn.scalars(sa.text(
            "SELECT reason FROM events WHERE part_id = :p AND from_status = 'submitting' "
            "AND to_status = 'submitting'"), {"p": part["id"]}))
    assert len(reasons) == 1 and "not guessing" in reasons[0]
    deadline = time.monotonic() + 3  # more ticks change nothing: the part stays parked
    driver.run_until(lambda: time.monotonic() > deadline)
    assert parts(driver, batch_id)[0]["status"] == "submitting"
    assert claude.emulator.stats()["batches_created"] == 2


def test_health_checks_anthropic_deployments(driver: InlineDriver,
                                             claude: EmulatorServer) -> None:
    from batchyard.services.health import check_deployment

    east = driver.svc.deployments.get("claude-east")
    assert check_deployment(east).healthy is True
    wrong = dataclasses.replace(east, api_key=SecretStr("sk-wrong"))
    verdict = check_deployment(wrong)
    assert verdict.healthy is False and "401" in str(verdict.error)
    assert "sk-wrong" not in str(verdict.error)
