"""Cost over the HTTP API: /admin/costs (master key only, stored sums), key budgets, and a
key over its budget refused at create with a real worker and the emulator."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from batchyard.api.app import create_app
from batchyard.config import PipelineSettings, Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.e2e.helpers import jsonl, request_line, wait_for
from tests.integration.test_api.conftest import MASTER, Api, ApiServer, WorkerProcess, auth

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_the_cost_report_is_for_the_master_key_and_checks_its_parameters(api: Api) -> None:
    _, key = api.new_key("someone")
    assert api.client.get("/admin/costs", headers=auth(key)).status_code in (401, 403)
    ok = api.client.get("/admin/costs?group_by=key&since=2026-01-01", headers=auth(MASTER))
    assert ok.status_code == 200, ok.text
    assert ok.json()["object"] == "list" and ok.json()["group_by"] == "key"
    documented = api.client.get("/openapi.json").json()["paths"]["/admin/costs"]["get"]
    groups = next(p for p in documented["parameters"] if p["name"] == "group_by")
    for group in groups["schema"]["enum"]:
        answer = api.client.get(f"/admin/costs?group_by={group}", headers=auth(MASTER))
        assert answer.status_code == 200 and answer.json()["group_by"] == group
    assert "part" in groups["schema"]["enum"]
    for query, param in [("group_by=colour", "group_by"), ("since=yesterday", "since")]:
        bad = api.client.get(f"/admin/costs?{query}", headers=auth(MASTER))
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["param"] == param


def test_a_key_budget_is_set_listed_and_validated(api: Api) -> None:
    key_id, _ = api.new_key("budgeted")
    done = api.client.post(f"/admin/keys/{key_id}/budget", headers=auth(MASTER),
                           json={"max_budget_usd": "12.5", "budget_period": "monthly"})
    assert done.status_code == 200, done.text
    assert done.json() == {"id": key_id, "max_budget_usd": "12.5", "budget_period": "monthly",
                           "spent_usd": "0"}
    listed = api.client.get("/admin/keys", headers=auth(MASTER)).json()["data"]
    assert next(k for k in listed if k["id"] == key_id)["max_budget_usd"] == "12.5"
    bad = api.client.post(f"/admin/keys/{key_id}/budget", headers=auth(MASTER),
                          json={"max_budget_usd": "5", "budget_period": "weekly"})
    assert bad.status_code == 400 and "budget_period" in bad.json()["error"]["message"]
    huge = api.client.post(f"/admin/keys/{key_id}/budget", headers=auth(MASTER),
                           json={"max_budget_usd": 5.786667286040958e+16})
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "max_budget_usd"
    missing = api.client.post("/admin/keys/key_nope/budget", headers=auth(MASTER),
                              json={"max_budget_usd": "5"})
    assert missing.status_code == 404


@pytest.mark.slow
def test_a_key_over_its_budget_is_refused_at_create(
        make_settings: Callable[..., Settings], isolated_database: str, unique_name: str,
        tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(validation_delay=0.0, finalize_delay=0.0)) as emu:
        settings = make_settings(
            database_url=isolated_database, openai_api_key="sk-test",
            openai_api_base=f"{emu.base_url}/v1",
            pipeline=PipelineSettings(queue=unique_name, poll_min_seconds=0.05,
                                      poll_max_seconds=0.2, tick_seconds=0.2,
                                      stale_seconds=5.0))
        with WorkerProcess(settings) as worker, ApiServer(create_app(settings)) as server, \
                httpx.Client(base_url=server.base_url, timeout=30) as http:
            made = http.post("/admin/keys", headers=auth(MASTER), json={"name": "capped"})
            key_id, key = made.json()["id"], made.json()["key"]
            data = jsonl([request_line(f"b{i}", "hello there " * 20) for i in range(5)])

            def create() -> httpx.Response:
                file_id = http.post("/v1/files", headers=auth(key), data={"purpose": "batch"},
                                    files={"file": ("in.jsonl", data)}).json()["id"]
                return http.post("/v1/batches", headers=auth(key), json={
                    "input_file_id": file_id, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h"})

            def set_budget(amount: Decimal) -> None:
                done = http.post(f"/admin/keys/{key_id}/budget", headers=auth(MASTER),
                                 json={"max_budget_usd": str(amount), "budget_period": "monthly"})
                assert done.status_code == 200, done.text

            set_budget(Decimal(1))
            first = create()
            assert first.status_code == 200, first.text
            estimate = Decimal(first.json()["cost"]["estimate"])
            assert estimate > 0
            batch_url = f"/v1/batches/{first.json()['id']}"
            wait_for(lambda: http.get(batch_url, headers=auth(key)).json()["status"]
                     == "completed", timeout=90, message=f"first batch done\n{worker.log()}")
            actual = Decimal(http.get(batch_url, headers=auth(key)).json()["cost"]["actual"])
            listed = http.get("/admin/keys", headers=auth(MASTER)).json()["data"]
            assert Decimal(next(k for k in listed if k["id"] == key_id)["spent_usd"]) == actual
            assert 0 < actual < estimate  # output is bounded by the default, not reached
            # Spent so far plus this batch's estimate would pass the budget: refused.
            set_budget(actual + estimate / 2)
            refused = create()
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "budget_exceeded" and error["param"] == "input_file_id"
            assert "budget" in error["message"] and error["type"] == "invalid_request_error"
            set_budget(actual + estimate)
            assert create().status_code == 200
