"""The dashboard through HTTP (TestClient): sign-in cookie, scoping, pages, downloads, cancel.

The pipeline runs inline on SQLite against the emulator on a real port; the pages are
checked against what the database holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.services import batches as batch_service
from batchyard.services import keys
from batchyard.ui.formatting import money
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload

MASTER = "sk-master-dashboard-test"


@pytest.fixture()
def ui(driver: InlineDriver) -> Iterator[TestClient]:
    driver.svc.settings = driver.svc.settings.model_copy(
        update={"master_key": SecretStr(MASTER)})
    app = create_app(driver.svc.settings, services=driver.svc)
    with TestClient(app, base_url="http://127.0.0.1:4000",
                    client=("127.0.0.1", 50000)) as client:
        yield client


def _sign_in(client: TestClient, key: str) -> None:
    response = client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/batches"


def _submit(driver: InlineDriver, lines: list[dict[str, Any]], *, owner: str | None = None,
            metadata: dict[str, str] | None = None) -> str:
    file_id = upload(driver.svc, jsonl(lines))
    if owner is not None:  # the file must belong to the batch's owner
        with driver.svc.engine.begin() as conn:
            conn.execute(sa.text("UPDATE files SET owner_key_id = :o WHERE id = :f"),
                         {"o": owner, "f": file_id})
    return batch_service.create_batch(driver.svc, owner=owner, input_file_id=file_id,
                                      endpoint="/v1/chat/completions", metadata=metadata).id


def _run(driver: InlineDriver, batch_id: str) -> None:
    driver.run_until(lambda: batch_service.get_batch(driver.svc, batch_id, owner=None).status
                     in ("completed", "failed"))


def test_pages_need_a_sign_in_and_the_key_lives_only_in_an_httponly_cookie(
        ui: TestClient) -> None:
    page = ui.get("/ui/batches", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/ui/login")
    wrong = ui.post("/ui/login", data={"key": "sk-wrong"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    response = ui.post("/ui/login", data={"key": MASTER}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "path=/ui" in cookie.lower()
    assert MASTER not in response.headers["location"]
    listing = ui.get("/ui/batches")
    assert listing.status_code == 200 and MASTER not in listing.text
    ui.post("/ui/logout")
    assert ui.get("/ui/batches", follow_redirects=False).status_code == 303


def test_list_and_detail_show_what_the_database_holds(ui: TestClient,
                                                      driver: InlineDriver) -> None:
    lines = [request_line(f"r{i}") for i in range(5)]
    lines.append(request_line("bad", x_emulator={"status": 400}))
    batch_id = _submit(driver, lines, metadata={"project": "zebra"})
    _run(driver, batch_id)
    _sign_in(ui, MASTER)

    rows = ui.get("/ui/fragments/batches", headers={"x-fragment": "1"}).text
    assert f'data-batch-id="{batch_id}" data-status="completed"' in rows
    assert "6 / 6" in rows and "(1 failed)" in rows
    assert batch_id in ui.get("/ui/batches", params={"q": "zebra"}).text
    assert batch_id not in ui.get("/ui/batches", params={"q": "giraffe"}).text
    assert batch_id not in ui.get("/ui/batches", params={"status": "failed"}).text

    detail = ui.get(f"/ui/batches/{batch_id}").text
    with driver.svc.engine.connect() as conn:
        parts = conn.execute(sa.text("SELECT provider_batch_id, deployment FROM parts "
                                     "WHERE batch_id = :b"), {"b": batch_id}).all()
        bad_line = conn.execute(sa.text("SELECT line_no FROM results WHERE batch_id = :b AND "
                                        "custom_id = 'bad'"), {"b": batch_id}).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM events WHERE batch_id = :b"),
                              {"b": batch_id}).scalar_one()
        cost_pico, priced = conn.execute(sa.text(
            "SELECT cost_pico, priced_requests FROM batches WHERE id = :b"), {"b": batch_id}).one()
    assert len(parts) == 2  # 6 requests, 4 per part
    for provider_batch_id, deployment in parts:
        assert provider_batch_id in detail and deployment in detail
    assert detail.count("<li><time>") == events
    failures = detail.split("Failed requests by error code")[1].split("</table>")[0]
    assert f'<td data-label="First line">{bad_line}</td>' in failures
    assert priced > 0  # the emulator's model is in the bundled price table
    assert f"{money(cost_pico / 10**12)} ({priced} priced" in detail
    assert f'<td data-label="Cost">{money(cost_pico / 10**12)}</td>' in rows


def test_results_download_as_jsonl_and_csv_match_the_result_rows(
        ui: TestClient, driver: InlineDriver) -> None:
    batch_id = _submit(driver, [request_line(f"q{i}", f"question {i}") for i in range(3)])
    _run(driver, batch_id)
    _sign_in(ui, MASTER)
    jsonl_body = ui.get(f"/ui/batches/{batch_id}/results.jsonl")
    assert "attachment" in jsonl_body.headers["content-disposition"]
    records = [orjson.loads(line) for line in jsonl_body.content.splitlines()]
    assert [r["custom_id"] for r in records] == ["q0", "q1", "q2"]
    assert all(r["ok"] and "question" in orjson.dumps(r["response"]).decode() for r in records)
    table = list(csv.DictReader(io.StringIO(ui.get(f"/ui/batches/{batch_id}/results.csv").text)))
    assert [row["custom_id"] for row in table] == ["q0", "q1", "q2"]
    output_id = batch_service.get_batch(driver.svc, batch_id, owner=None).output_file_id
    output = ui.get(f"/ui/files/{output_id}")
    assert output.status_code == 200 and len(output.content.splitlines()) == 3


def test_a_virtual_key_sees_only_its_own_batches(ui: TestClient, driver: InlineDriver) -> None:
    record, token = keys.create_key(driver.svc, name="team-a")
    mine = _submit(driver, [request_line("a")], owner=record.id)
    theirs = _submit(driver, [request_line("m")])
    _sign_in(ui, token)
    listing = ui.get("/ui/batches").text
    assert mine in listing and theirs not in listing
    assert ui.get(f"/ui/batches/{theirs}").status_code == 404
    assert ui.get(f"/ui/batches/{theirs}/results.jsonl").status_code == 404
    assert ui.post(f"/ui/batches/{theirs}/cancel", follow_redirects=False).status_code == 404
    assert ui.get("/ui/deployments").status_code == 403
    keys.revoke_key(driver.svc, record.id)
    assert ui.get("/ui/batches", follow_redirects=False).status_code == 303


def test_cancel_from_the_dashboard_moves_the_batch_to_cancelling(
        ui: TestClient, driver: InlineDriver) -> None:
    batch_id = _submit(driver, [request_line("c")])
    _sign_in(ui, MASTER)
    refused = ui.post(f"/ui/batches/{batch_id}/cancel", headers={"origin": "http://evil.test"},
                      follow_redirects=False)
    assert refused.status_code == 403
    assert batch_service.get_batch(driver.svc, batch_id, owner=None).status == "validating"
    response = ui.post(f"/ui/batches/{batch_id}/cancel", follow_redirects=False)
    assert response.status_code == 303
    assert batch_service.get_batch(driver.svc, batch_id, owner=None).status == "cancelling"
    assert 'data-status="cancelling"' in ui.get(f"/ui/fragments/batches/{batch_id}").text
