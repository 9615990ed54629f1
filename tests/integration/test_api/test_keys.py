"""Virtual keys: hashed storage, admin routes and CLI, per-key isolation and limits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from batchyard.cli import app as cli_app
from batchyard.config import Settings
from batchyard.db.models import ApiKeyRow
from tests.integration.test_api.conftest import MASTER, Api, auth, jsonl

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PREFIXES = ["/v1", "", "/openai/v1", "/azure/v1"]


@pytest.fixture()
def owned(api: Api) -> dict[str, str]:
    """Key A with a file and a batch; key B with nothing yet."""
    a_id, a_key = api.new_key("team-a")
    b_id, b_key = api.new_key("team-b")
    file_id = api.file_id(a_key)
    batch = api.create_batch(a_key, file_id)
    assert batch.status_code == 200, batch.text
    return {"a_id": a_id, "a": a_key, "b_id": b_id, "b": b_key, "file": file_id,
            "batch": batch.json()["id"]}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/files/{file}"), ("GET", "/files/{file}/content"), ("DELETE", "/files/{file}"),
    ("GET", "/batches/{batch}"), ("POST", "/batches/{batch}/cancel"),
])
def test_another_keys_objects_are_404(api: Api, owned: dict[str, str], prefix: str,
                                      method: str, path: str) -> None:
    url = prefix + path.format(**owned)
    response = api.client.request(method, url, headers=auth(owned["b"]))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    # The owner (and the master) still see it: the 404 is isolation, not absence.
    if method == "GET":
        assert api.client.get(url, headers=auth(owned["a"])).status_code == 200
        assert api.client.get(url, headers=auth(MASTER)).status_code == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_creating_a_batch_over_another_keys_file_is_404(api: Api, owned: dict[str, str],
                                                        prefix: str) -> None:
    response = api.create_batch(owned["b"], owned["file"], prefix=prefix)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "input_file_id"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_lists_show_only_the_callers_objects(api: Api, owned: dict[str, str],
                                             prefix: str) -> None:
    b_file = api.file_id(owned["b"])
    for kind, mine, theirs in (("files", b_file, owned["file"]),
                               ("batches", None, owned["batch"])):
        listed = api.client.get(f"{prefix}/{kind}", headers=auth(owned["b"])).json()
        ids = {item["id"] for item in listed["data"]}
        assert theirs not in ids and (mine is None or mine in ids)
        everything = api.client.get(f"{prefix}/{kind}?limit=100", headers=auth(MASTER)).json()
        assert theirs in {item["id"] for item in everything["data"]}


def test_the_owner_can_cancel_and_delete(api: Api, owned: dict[str, str]) -> None:
    cancelled = api.client.post(f"/v1/batches/{owned['batch']}/cancel", headers=auth(owned["a"]))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelling"
    deleted = api.client.delete(f"/v1/files/{owned['file']}", headers=auth(owned["a"]))
    assert deleted.json() == {"id": owned["file"], "object": "file", "deleted": True}
    assert api.client.get(f"/v1/files/{owned['file']}", headers=auth(owned["a"])).status_code \
        == 404


def test_keys_are_stored_hashed_and_shown_once(api: Api) -> None:
    key_id, plaintext = api.new_key("hashed")
    assert plaintext.startswith("sk-by-")
    with api.services.sessions() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == key_id))
    assert row is not None and row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    columns = [str(getattr(row, c.key)) for c in ApiKeyRow.__table__.columns]
    assert plaintext not in columns
    listed = api.client.get("/admin/keys", headers=auth(MASTER)).text
    assert key_id in listed and plaintext not in listed


def test_revoked_keys_are_401_at_once(api: Api, owned: dict[str, str]) -> None:
    assert api.client.get("/v1/batches", headers=auth(owned["a"])).status_code == 200
    revoked = api.client.delete(f"/admin/keys/{owned['a_id']}", headers=auth(MASTER))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = api.client.get("/v1/batches", headers=auth(owned["a"]))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert api.client.delete("/admin/keys/key_nope", headers=auth(MASTER)).status_code == 404


def test_admin_routes_need_the_master_key(api: Api, owned: dict[str, str]) -> None:
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                         ("DELETE", f"/admin/keys/{owned['b_id']}"),
                         ("GET", "/health/deployments")):
        response = api.client.request(method, path, headers=auth(owned["a"]),
                                      json={"name": "x"} if method == "POST" else None)
        assert response.status_code == 403, (path, response.text)
        assert api.client.request(method, path).status_code == 401


def test_a_keys_file_size_limit_is_413(api: Api) -> None:
    _, small = api.new_key("small", max_file_bytes=200)
    assert api.upload(small, content=jsonl(1)).status_code == 200
    response = api.upload(small, content=jsonl(20))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_a_keys_batches_in_flight_limit_is_429(api: Api) -> None:
    _, limited = api.new_key("one-at-a-time", max_batches_in_flight=1)
    first = api.create_batch(limited)
    assert first.status_code == 200
    second = api.create_batch(limited)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "batch_limit_exceeded"
    assert api.create_batch(MASTER).status_code == 200  # the master has no such limit


def test_bad_admin_bodies_are_400(api: Api) -> None:
    for body in ({}, {"name": "x", "max_file_bytes": -1}, {"name": "x", "unknown": 1}):
        response = api.client.post("/admin/keys", headers=auth(MASTER), json=body)
        assert response.status_code == 400, (body, response.text)


def test_cli_creates_lists_and_revokes_keys(make_settings: Callable[..., Settings],
                                            api: Api) -> None:
    settings = make_settings()
    env = {"BATCHYARD_DATABASE_URL": settings.effective_database_url,
           "BATCHYARD_BROKER_URL": settings.effective_broker_url,
           "BATCHYARD_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "from-cli", "--max-batches-in-flight",
                                      "2"], env=env)
    assert created.exit_code == 0, created.output
    key_id = created.output.split("id:")[1].split()[0]
    plaintext = created.output.split("key:")[1].split()[0]
    assert api.client.get("/v1/files", headers=auth(plaintext)).status_code == 200
    listed = runner.invoke(cli_app, ["keys", "list"], env=env)
    assert key_id in listed.output and plaintext not in listed.output
    revoked = runner.invoke(cli_app, ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert api.client.get("/v1/files", headers=auth(plaintext)).status_code == 401
    missing = runner.invoke(cli_app, ["keys", "revoke", "key_missing"], env=env)
    assert missing.exit_code == 2
