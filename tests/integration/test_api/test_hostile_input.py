"""Hostile and odd input on PostgreSQL: always a 4xx in OpenAI's envelope, nothing stored.

Every case runs under every route prefix the Files/Batches API answers on. A case passes when
the status is the expected 4xx, the body is the error envelope, and no table changed (row
counts, and the status of every batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.api.app import ROUTE_PREFIXES
from tests.integration.test_api.conftest import MASTER, Api, auth, jsonl

pytestmark = [pytest.mark.postgres]

PREFIXES = [prefix for prefix, _ in ROUTE_PREFIXES]
TABLES = ("api_keys", "files", "file_chunks", "batches", "events", "schedules",
          "webhook_deliveries")
H = auth(MASTER)


def create_body(**changes: Any) -> dict[str, Any]:
    body = {"input_file_id": "file-placeholder", "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}
    body.update(changes)
    return body


def multipart(content: bytes, boundary: str = "abc") -> dict[str, Any]:
    return {"headers": {**H, "content-type": f"multipart/form-data; boundary={boundary}"},
            "content": content}


#: (name, method, path under the prefix, request kwargs, expected status)
CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("retrieve NUL id", "GET", "/batches/%00", {"headers": H}, 404),
    ("retrieve id with NUL inside", "GET", "/batches/batch_a%00b", {"headers": H}, 404),
    ("cancel NUL id", "POST", "/batches/%00/cancel", {"headers": H}, 404),
    ("list batches after NUL", "GET", "/batches?after=%00", {"headers": H}, 400),
    ("list batches limit NUL", "GET", "/batches?limit=%00", {"headers": H}, 400),
    ("list files purpose NUL", "GET", "/files?purpose=%00", {"headers": H}, 400),
    ("list files after NUL", "GET", "/files?after=%00", {"headers": H}, 400),
    ("retrieve file NUL id", "GET", "/files/%00", {"headers": H}, 404),
    ("file content NUL id", "GET", "/files/%00/content", {"headers": H}, 404),
    ("delete file NUL id", "DELETE", "/files/%00", {"headers": H}, 404),
    ("create with NUL model", "POST", "/batches",
     {"headers": H, "json": create_body(model="a\x00")}, 400),
    ("create with NUL metadata value", "POST", "/batches",
     {"headers": H, "json": create_body(metadata={"k": "v\x00"})}, 400),
    ("create with NUL metadata key", "POST", "/batches",
     {"headers": H, "json": create_body(metadata={"k\x00": "v"})}, 400),
    ("create with NUL input_file_id", "POST", "/batches",
     {"headers": H, "json": create_body(input_file_id="file-\x00")}, 400),
    ("create with NUL in an ignored field", "POST", "/batches",
     {"headers": H, "json": create_body(extra=["\x00"])}, 400),
    ("create with a lone surrogate", "POST", "/batches",
     {"headers": {**H, "content-type": "application/json"},
      "content": b'{"input_file_id": "\\ud800", "endpoint": "/v1/chat/completions",'
                 b' "completion_window": "24h"}'}, 400),
    ("multipart that is not multipart", "POST", "/files", multipart(b"not multipart at all"),
     400),
    ("multipart without a boundary", "POST", "/files",
     {"headers": {**H, "content-type": "multipart/form-data"}, "content": b"x"}, 400),
    ("multipart with a huge filename", "POST", "/files",
     {"headers": H, "data": {"purpose": "batch"},
      "files": {"file": ("a" * 10_000 + ".jsonl", jsonl())}}, 413),
    ("upload with NUL purpose", "POST", "/files",
     {"headers": H, "data": {"purpose": "batch\x00"}, "files": {"file": ("a.jsonl", jsonl())}},
     400),
    ("upload with NUL expiry", "POST", "/files",
     {"headers": H, "data": {"purpose": "batch", "expires_after[anchor]": "created_at",
                             "expires_after[seconds]": "36\x0000"},
      "files": {"file": ("a.jsonl", jsonl())}}, 400),
]

#: Routes outside the prefixed Files/Batches API.
OTHER_CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("key with NUL name", "POST", "/admin/keys", {"headers": H, "json": {"name": "k\x00"}}, 400),
    ("revoke NUL key id", "DELETE", "/admin/keys/%00", {"headers": H}, 404),
    ("key body not JSON", "POST", "/admin/keys", {"headers": H, "content": b"{"}, 400),
    ("schedule with NUL name", "POST", "/v1/schedules",
     {"headers": H, "json": {"name": "n\x00", "cron": "0 * * * *",
                             "source": {"kind": "file", "file_id": "file-x"}}}, 400),
    ("schedule with NUL cron", "POST", "/v1/schedules",
     {"headers": H, "json": {"cron": "0 * * * *\x00",
                             "source": {"kind": "file", "file_id": "file-x"}}}, 400),
    ("schedule with NUL webhook secret", "POST", "/v1/schedules",
     {"headers": H, "json": {"cron": "0 * * * *", "webhook_secret": "s\x00",
                             "source": {"kind": "file", "file_id": "file-x"}}}, 400),
    ("get NUL schedule", "GET", "/v1/schedules/%00", {"headers": H}, 404),
    ("pause NUL schedule", "POST", "/v1/schedules/%00/pause", {"headers": H}, 404),
    ("delete NUL schedule", "DELETE", "/v1/schedules/%00", {"headers": H}, 404),
    ("schedule runs limit NUL", "GET", "/v1/schedules/x/runs?limit=%00", {"headers": H}, 400),
    ("huge header", "GET", "/v1/batches", {"headers": {**H, "x-big": "a" * 1_000_000}}, 431),
    ("NUL path on an unknown route", "GET", "/nowhere/%00", {"headers": H}, 404),
]

ALL = [(f"{prefix or '/'} {name}", method, prefix + path, kwargs, status)
       for prefix in PREFIXES for name, method, path, kwargs, status in CASES]
ALL += [(name, method, path, kwargs, status) for name, method, path, kwargs, status in OTHER_CASES]


def snapshot(api: Api) -> tuple[Any, ...]:
    with api.services.engine.connect() as conn:
        counts = tuple(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES)
        statuses = conn.execute(sa.text(
            "SELECT coalesce(string_agg(id || ':' || status, ',' ORDER BY id), '') FROM batches"
        )).scalar()
    return (*counts, statuses)


@pytest.fixture()
def seeded(api: Api) -> Iterator[Api]:
    """An API holding a file and a batch, so that "nothing changed" means something."""
    response = api.create_batch()
    assert response.status_code == 200, response.text
    yield api


def test_there_are_enough_cases() -> None:
    assert len(ALL) >= 60


@pytest.mark.parametrize(("name", "method", "path", "kwargs", "expected"), ALL,
                         ids=[case[0] for case in ALL])
def test_hostile_input_is_refused_and_changes_nothing(
        seeded: Api, name: str, method: str, path: str, kwargs: dict[str, Any],
        expected: int) -> None:
    before = snapshot(seeded)
    response = seeded.client.request(method, path, **kwargs)
    assert response.status_code == expected, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert snapshot(seeded) == before


@pytest.mark.parametrize(("sent", "stored"), [
    ("..\\..\\tmp\\evil.jsonl", "evil.jsonl"),
    ("../../etc/evil.jsonl", "evil.jsonl"),
    ("C:\\Users\\x\\data.jsonl", "data.jsonl"),
    ("we\x00ird\x07name\x1b.jsonl", "weirdname.jsonl"),
    ("tab\there.jsonl", "tabhere.jsonl"),
    ("a/b\\c/\x00.jsonl", ".jsonl"),
])
def test_uploaded_filenames_are_reduced_to_a_safe_base_name(api: Api, sent: str,
                                                             stored: str) -> None:
    # Built by hand: httpx would percent-encode the control characters itself.
    body = (b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="'
            + sent.encode() + b'"\r\nContent-Type: application/jsonl\r\n\r\n'
            + jsonl() + b"\r\n--xyz--\r\n")
    response = api.client.post("/v1/files", content=body, headers={
        **H, "content-type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == stored
    listed = api.client.get(f"/v1/files/{response.json()['id']}", headers=H).json()
    assert listed["filename"] == stored


def test_a_body_that_is_too_short_times_out_with_408(make_settings: Any) -> None:
    import asyncio

    from batchyard.api.app import create_app
    from batchyard.config import ApiSettings
    from batchyard.services.container import build_services
    from tests.e2e.helpers import Nudges

    settings = make_settings(api=ApiSettings(body_read_timeout=0.3))
    services = build_services(settings, nudge=Nudges())
    app = create_app(settings, services)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        chunks = iter([{"type": "http.request", "body": b'{"input', "more_body": True}])

        async def receive() -> dict[str, Any]:
            message = next(chunks, None)
            if message is None:
                await asyncio.sleep(3600)  # the client never sends the rest
            return message or {}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/batches", "raw_path": b"",
                 "root_path": "", "query_string": b"", "scheme": "http",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000),
                 "headers": [(b"authorization", f"Bearer {MASTER}".encode()),
                             (b"content-length", b"1000")], "app": app,
                 "http_version": "1.1"}
        await app(scope, receive, send)

    try:
        asyncio.run(asyncio.wait_for(run(), 20))
    finally:
        services.close()
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
