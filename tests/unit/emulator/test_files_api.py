"""Files endpoints on every surface: shapes, status codes, ids, paging, error envelopes."""

from __future__ import annotations

import re

import pytest

from .conftest import MakeApi, chat_file

pytestmark = pytest.mark.anyio

ALL = ["openai", "azure", "azure_v1"]
FILE_ID = {"openai": r"^file-[0-9A-Za-z]{22}$", "azure": r"^file-[0-9a-f]{32}$"}


@pytest.mark.parametrize("surface", ALL)
async def test_upload_returns_a_file_object_with_the_flavors_id(make_api: MakeApi,
                                                                surface: str) -> None:
    api = await make_api(surface)
    data = chat_file(3)
    response = await api.upload(data, filename="part-1.jsonl")
    assert response.status_code == (201 if surface == "azure" else 200)
    body = response.json()
    assert re.match(FILE_ID["openai" if surface == "openai" else "azure"], body["id"])
    assert (body["object"], body["bytes"], body["filename"], body["purpose"], body["status"]) == (
        "file", len(data), "part-1.jsonl", "batch", "processed")
    content = await api.call("GET", f"/files/{body['id']}/content")
    assert content.content == data


async def test_azure_legacy_upload_sends_a_location(make_api: MakeApi) -> None:
    api = await make_api("azure")
    response = await api.upload(chat_file(1))
    file_id = response.json()["id"]
    assert response.headers["location"].endswith(f"/openai/files/{file_id}?api-version=2024-10-21")


async def test_openai_batch_files_expire_in_30_days_by_default(make_api: MakeApi) -> None:
    api = await make_api("openai")
    body = (await api.upload(chat_file(1))).json()
    assert body["expires_at"] - body["created_at"] == 2_592_000


@pytest.mark.parametrize(("surface", "fields"), [
    ("openai", {"expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"}),
    ("azure", {"expires_after.anchor": "created_at", "expires_after.seconds": "1209600"}),
])
async def test_expires_after_in_bracket_or_dot_notation(make_api: MakeApi, surface: str,
                                                        fields: dict[str, str]) -> None:
    api = await make_api(surface)
    body = (await api.upload(chat_file(1), **fields)).json()
    seconds = int(next(v for k, v in fields.items() if "seconds" in k))
    assert body["expires_at"] - body["created_at"] == seconds


async def test_expires_after_out_of_range_is_refused(make_api: MakeApi) -> None:
    api = await make_api("azure_v1")  # Azure needs at least 14 days
    response = await api.upload(chat_file(1), **{"expires_after[anchor]": "created_at",
                                                  "expires_after[seconds]": "7200"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "expires_after"


@pytest.mark.parametrize("surface", ALL)
async def test_a_non_jsonl_batch_upload_is_refused(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface)
    response = await api.upload(b"a,b\n", filename="input.csv")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message == "Invalid file format for Batch API. Must be .jsonl"
    assert api.emulator.stats()["files_uploaded"] == 0


async def test_a_too_large_upload_is_refused_and_not_kept(make_api: MakeApi) -> None:
    api = await make_api("openai", max_file_bytes=100)
    response = await api.upload(chat_file(5))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "File is too large."
    assert list(api.emulator.data_dir.iterdir()) == []


async def test_missing_purpose_or_file_is_a_400(make_api: MakeApi) -> None:
    api = await make_api("openai")
    no_purpose = await api.call("POST", "/files", files={"file": ("a.jsonl", b"{}")})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"
    no_file = await api.call("POST", "/files", data={"purpose": "batch"},
                             files={"other": ("x", b"")})
    assert no_file.json()["error"]["param"] == "file"


@pytest.mark.parametrize("surface", ["openai", "azure_v1"])
async def test_list_files_pages_newest_first_with_after(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface)
    ids = [(await api.upload(chat_file(1), filename=f"f{i}.jsonl")).json()["id"]
           for i in range(5)]
    first = (await api.call("GET", "/files", params={"limit": "2"})).json()
    assert [f["id"] for f in first["data"]] == ids[::-1][:2]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[4], ids[3])
    rest = (await api.call("GET", "/files", params={"after": first["last_id"]})).json()
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:]
    assert rest["has_more"] is False
    ascending = (await api.call("GET", "/files", params={"order": "asc"})).json()
    assert [f["id"] for f in ascending["data"]] == ids


async def test_azure_2024_10_21_file_list_has_no_cursors(make_api: MakeApi) -> None:
    api = await make_api("azure")
    await api.upload(chat_file(1))
    body = (await api.call("GET", "/files")).json()
    assert set(body) == {"object", "data"} and len(body["data"]) == 1
    paged = (await api.call("GET", "/files", params={"api-version": "2025-04-01-preview"})).json()
    assert paged["has_more"] is False


async def test_list_files_filters_by_purpose(make_api: MakeApi) -> None:
    api = await make_api("openai")
    await api.upload(chat_file(1))
    await api.upload(b"x", filename="notes.txt", purpose="user_data")
    body = (await api.call("GET", "/files", params={"purpose": "user_data"})).json()
    assert [f["filename"] for f in body["data"]] == ["notes.txt"]


@pytest.mark.parametrize("surface", ALL)
async def test_delete_then_everything_is_404_but_stats_remember(make_api: MakeApi,
                                                                surface: str) -> None:
    api = await make_api(surface)
    file_id = (await api.upload(chat_file(1))).json()["id"]
    deleted = await api.call("DELETE", f"/files/{file_id}")
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    for method, path in (("GET", f"/files/{file_id}"), ("GET", f"/files/{file_id}/content"),
                         ("DELETE", f"/files/{file_id}")):
        assert (await api.call(method, path)).status_code == 404
    assert api.emulator.stats()["files"][0]["id"] == file_id


async def test_not_found_bodies_use_each_surfaces_envelope(make_api: MakeApi) -> None:
    openai = (await (await make_api("openai")).call("GET", "/files/file-nope")).json()
    assert openai == {"error": {"message": "No such File object: file-nope",
                                "type": "invalid_request_error", "param": "id", "code": None}}
    azure = (await (await make_api("azure")).call("GET", "/files/file-nope")).json()
    assert azure == {"error": {"code": "notFound", "message": "No such File object: file-nope"}}
    v1 = (await (await make_api("azure_v1")).call("GET", "/files/file-nope")).json()
    assert v1["error"]["type"] == "invalid_request_error"


async def test_azure_legacy_requires_api_version(make_api: MakeApi) -> None:
    api = await make_api("azure")
    response = await api.client.get("/openai/files")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"
    v1 = await api.client.get("/openai/v1/files")
    assert v1.status_code == 200


@pytest.mark.parametrize("surface", ALL)
async def test_every_response_carries_request_ids(make_api: MakeApi, surface: str) -> None:
    api = await make_api(surface)
    for response in (await api.call("GET", "/files"), await api.call("GET", "/files/nope")):
        assert response.headers["x-request-id"]
        if surface == "openai":
            assert re.match(r"^req_[0-9a-f]{32}$", response.headers["x-request-id"])
            assert "apim-request-id" not in response.headers
        else:
            assert response.headers["apim-request-id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(("surface", "headers", "status"), [
    ("openai", {"Authorization": "Bearer sk-good"}, 200),
    ("openai", {"Authorization": "Bearer sk-bad"}, 401),
    ("openai", {}, 401),
    ("azure", {"api-key": "sk-good"}, 200),
    ("azure", {"api-key": "sk-bad"}, 401),
    ("azure_v1", {"Authorization": "Bearer sk-good"}, 200),
    ("azure_v1", {"api-key": "sk-bad"}, 401),
])
async def test_configured_keys_are_enforced(make_api: MakeApi, surface: str,
                                            headers: dict[str, str], status: int) -> None:
    api = await make_api(surface, api_keys=("sk-good",))
    response = await api.call("GET", "/files", headers=headers)
    assert response.status_code == status
    if status == 401:
        error = response.json()["error"]
        assert "sk-bad" not in response.text  # never echo a secret
        if surface == "openai":
            assert error["type"] == "invalid_request_error"
        else:
            assert error["code"] == "401"
