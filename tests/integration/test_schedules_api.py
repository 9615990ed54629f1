"""``/v1/schedules`` through the real app, and ``batchyard schedule ...`` through the CLI."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from typer.testing import CliRunner

from batchyard.api.app import create_app
from batchyard.cli.schedules import schedule_app
from batchyard.services import files, keys
from batchyard.services.container import Services, build_services
from tests.e2e.helpers import Nudges
from tests.integration.test_schedules_fixtures import sched_db_url, schedule_settings

__all__ = ["sched_db_url"]

pytestmark = pytest.mark.postgres
MASTER = "sk-master-sched-test"


@pytest.fixture()
def svc(sched_db_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = schedule_settings(sched_db_url, tmp_path).model_copy(
        update={"master_key": SecretStr(MASTER)})
    services = build_services(settings, nudge=Nudges())
    try:
        yield services
    finally:
        services.close()


@pytest.fixture()
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc.settings, services=svc)) as test_client:
        yield test_client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _file(svc: Services, owner: str | None) -> str:
    line = (b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
            b'"body":{"model":"m","messages":[]}}\n')
    return files.create_file(svc, owner=owner, filename="a.jsonl", purpose="batch",
                             stream=io.BytesIO(line)).id


def _body(**extra: Any) -> dict[str, Any]:
    return {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris",
            "source": {"kind": "file", "file_id": "file-x"}, "model": "gpt-4o-mini", **extra}


def test_master_manages_a_schedule_end_to_end(svc: Services, client: TestClient) -> None:
    body = _body(source={"kind": "file", "file_id": _file(svc, None)},
                 webhook_url="https://example.com/h", webhook_secret="topsecret")
    created = client.post("/v1/schedules", json=body, headers=_auth(MASTER))
    assert created.status_code == 200, created.text
    sched = created.json()
    assert sched["object"] == "schedule" and sched["id"].startswith("sched_")
    assert sched["webhook_secret_set"] is True and "topsecret" not in created.text
    assert sched["next_fire_at"] > sched["created_at"]
    sid = sched["id"]
    listed = client.get("/v1/schedules", headers=_auth(MASTER)).json()
    assert sid in [s["id"] for s in listed["data"]]
    paused = client.post(f"/v1/schedules/{sid}/pause", headers=_auth(MASTER)).json()
    assert paused["enabled"] is False
    resumed = client.post(f"/v1/schedules/{sid}/resume", headers=_auth(MASTER)).json()
    assert resumed["enabled"] is True
    runs = client.get(f"/v1/schedules/{sid}/runs", headers=_auth(MASTER)).json()
    assert runs["object"] == "list" and runs["data"] == []
    gone = client.delete(f"/v1/schedules/{sid}", headers=_auth(MASTER))
    assert gone.json()["deleted"] is True
    assert client.get(f"/v1/schedules/{sid}", headers=_auth(MASTER)).status_code == 404


def test_invalid_cron_and_zone_are_rejected_in_openai_error_shape(client: TestClient) -> None:
    for bad in ({"cron": "every night"}, {"timezone": "Mars/Base"}):
        response = client.post("/v1/schedules", json=_body(**bad), headers=_auth(MASTER))
        assert response.status_code in (400, 422)
        assert "error" in response.json()


def test_a_key_without_can_schedule_is_refused(svc: Services, client: TestClient) -> None:
    _record, plain = keys.create_key(svc, name="no-sched")
    response = client.get("/v1/schedules", headers=_auth(plain))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_permissions"


def test_a_scheduling_key_sees_only_its_own_and_may_not_run_code(svc: Services,
                                                                 client: TestClient) -> None:
    record, plain = keys.create_key(svc, name="sched", can_schedule=True)
    mine = client.post("/v1/schedules", headers=_auth(plain),
                       json=_body(source={"kind": "file", "file_id": _file(svc, record.id)}))
    assert mine.status_code == 200, mine.text
    assert mine.json()["owner"] == record.id
    theirs = client.post("/v1/schedules", headers=_auth(MASTER),
                         json=_body(source={"kind": "file", "file_id": _file(svc, None)})).json()
    visible = [s["id"] for s in client.get("/v1/schedules", headers=_auth(plain)).json()["data"]]
    assert mine.json()["id"] in visible and theirs["id"] not in visible
    assert client.get(f"/v1/schedules/{theirs['id']}", headers=_auth(plain)).status_code == 404
    code = client.post("/v1/schedules", headers=_auth(plain),
                       json=_body(source={"kind": "callable", "target": "os:getcwd"}))
    assert code.status_code == 403


def test_the_cli_adds_lists_pauses_and_removes(sched_db_url: str, tmp_path: Path) -> None:
    env = {"BATCHYARD_DATABASE_URL": sched_db_url, "BATCHYARD_DATA_DIR": str(tmp_path),
           "COLUMNS": "200"}
    runner = CliRunner()
    added = runner.invoke(schedule_app, ["add", "--cron", "*/15 * * * *", "--tz", "UTC",
                                         "--name", "cli-test", "--path", "/data/{date}.jsonl",
                                         "--metadata", "team=eval"], env=env)
    assert added.exit_code == 0, added.output
    sid = added.output.split()[0]
    assert sid.startswith("sched_") and "next run" in added.output
    listed = runner.invoke(schedule_app, ["list"], env=env)
    assert "cli-test" in listed.output and sid in listed.output
    shown = json.loads(runner.invoke(schedule_app, ["show", sid], env=env).output)
    assert shown["source"] == {"kind": "path", "path": "/data/{date}.jsonl"}
    assert shown["metadata"] == {"team": "eval"}
    paused = json.loads(runner.invoke(schedule_app, ["pause", sid], env=env).output)
    assert paused["enabled"] is False
    runs = runner.invoke(schedule_app, ["runs", sid], env=env)
    assert runs.exit_code == 0
    removed = runner.invoke(schedule_app, ["remove", sid], env=env)
    assert removed.exit_code == 0
    missing = runner.invoke(schedule_app, ["show", sid], env=env)
    assert missing.exit_code == 1 and "No such schedule" in missing.output


def test_the_cli_rejects_two_sources_and_a_bad_cron(sched_db_url: str, tmp_path: Path) -> None:
    env = {"BATCHYARD_DATABASE_URL": sched_db_url, "BATCHYARD_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    both = runner.invoke(schedule_app, ["add", "--cron", "0 2 * * *", "--file-id", "file-a",
                                        "--path", "/x.jsonl"], env=env)
    assert both.exit_code == 1 and "exactly one source" in both.output
    bad = runner.invoke(schedule_app, ["add", "--cron", "nope", "--file-id", "f"], env=env)
    assert bad.exit_code == 1 and "cron" in bad.output
