"""The fast path and FastAPI's router answer the two hottest calls identically.

Two apps over the same services, one with :class:`BatchFastPath` in front and one without,
receive the same requests (successes and every error the two handlers can give); status,
content type and body must match (ids and timestamps of newly created batches aside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.services.container import Services, build_services
from tests.e2e.helpers import Nudges
from tests.integration.test_api.conftest import MASTER, Api, auth, local_client

pytestmark = [pytest.mark.postgres]

FRESH = ("id", "created_at", "expires_at")


@dataclass
class Pair:
    fast: TestClient
    plain: TestClient
    api: Api


@pytest.fixture()
def pair(make_settings: Callable[..., Settings]) -> Iterator[Pair]:
    settings = make_settings()
    services: Services = build_services(settings, nudge=Nudges())
    try:
        with local_client(create_app(settings, services)) as fast, \
                local_client(create_app(settings, services, fast_path=False)) as plain:
            yield Pair(fast, plain, Api(fast, services, Nudges()))
    finally:
        services.close()


def _answer(client: TestClient, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
    response = client.request(method, path, **kwargs)
    body = response.json()
    if response.status_code == 200 and body.get("object") == "batch" and method == "POST":
        body = {k: v for k, v in body.items() if k not in FRESH}
    return response.status_code, response.headers["content-type"], body


def assert_same(pair: Pair, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    fast = _answer(pair.fast, method, path, **kwargs)
    plain = _answer(pair.plain, method, path, **kwargs)
    assert fast == plain
    return fast[0], fast[2]


def create_body(file_id: str, **extra: Any) -> dict[str, Any]:
    return {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h", **extra}


@pytest.mark.parametrize("prefix", ["/v1", "", "/openai", "/azure/v1"])
def test_create_and_retrieve_succeed_alike_under_every_prefix(pair: Pair, prefix: str) -> None:
    file_id = pair.api.file_id()
    status, body = assert_same(pair, "POST", f"{prefix}/batches", headers=auth(MASTER),
                               json=create_body(file_id, metadata={"k": "v"}))
    assert status == 200 and body["status"] == "validating" and body["metadata"] == {"k": "v"}
    batch_id = pair.fast.post(f"{prefix}/batches", headers=auth(MASTER),
                              json=create_body(file_id)).json()["id"]
    status, body = assert_same(pair, "GET", f"{prefix}/batches/{batch_id}", headers=auth(MASTER))
    assert status == 200 and body["id"] == batch_id


CREATE_ERRORS: list[tuple[str, dict[str, Any], int]] = [
    ("no key", {"json": {}}, 401),
    ("wrong key", {"headers": auth("sk-wrong"), "json": {}}, 401),
    ("unknown virtual key", {"headers": auth("sk-by-nope"), "json": {}}, 401),
    ("not JSON", {"headers": auth(MASTER), "content": b"{nope"}, 400),
    ("JSON but not an object", {"headers": auth(MASTER), "content": b"[1]"}, 400),
    ("empty body", {"headers": auth(MASTER), "content": b""}, 400),
    ("missing input_file_id", {"headers": auth(MASTER),
                               "json": {"endpoint": "/v1/chat/completions",
                                        "completion_window": "24h"}}, 400),
    ("bad completion_window", {"headers": auth(MASTER),
                               "json": create_body("file-x", completion_window="48h")}, 400),
    ("bad endpoint", {"headers": auth(MASTER),
                      "json": create_body("file-x", endpoint="/v1/nope")}, 400),
    ("Azure endpoint on /v1", {"headers": auth(MASTER),
                               "json": create_body("file-x", endpoint="/chat/completions")}, 400),
    ("too many metadata pairs", {"headers": auth(MASTER),
                                 "json": create_body("file-x",
                                                     metadata={str(i): "v" for i in range(17)})},
     400),
    ("metadata value not a string", {"headers": auth(MASTER),
                                     "json": create_body("file-x", metadata={"a": 1})}, 400),
    ("unknown input file", {"headers": auth(MASTER), "json": create_body("file-missing")}, 404),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), CREATE_ERRORS,
                         ids=[c[0] for c in CREATE_ERRORS])
def test_create_errors_are_the_same(pair: Pair, case: str, kwargs: dict[str, Any],
                                    expected: int) -> None:
    status, body = assert_same(pair, "POST", "/v1/batches", **kwargs)
    assert status == expected, body
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_an_unknown_batch_and_a_stranger_key_are_the_same_404(pair: Pair) -> None:
    batch_id = pair.fast.post("/v1/batches", headers=auth(MASTER),
                              json=create_body(pair.api.file_id())).json()["id"]
    _, stranger = pair.api.new_key("stranger")
    for key, path in ((MASTER, "/v1/batches/batch_missing"), (stranger, f"/v1/batches/{batch_id}"),
                      (MASTER, "/v1/batches/%00")):
        status, body = assert_same(pair, "GET", path, headers=auth(key))
        assert status == 404 and body["error"]["type"] == "invalid_request_error"
    status, _ = assert_same(pair, "GET", f"/v1/batches/{batch_id}", headers=auth("sk-wrong"))
    assert status == 401


def test_a_key_at_its_in_flight_limit_gets_the_same_429(pair: Pair) -> None:
    _, key = pair.api.new_key("limited", max_batches_in_flight=1)
    file_id = pair.api.file_id(key)
    assert pair.fast.post("/v1/batches", headers=auth(key),
                          json=create_body(file_id)).status_code == 200
    status, body = assert_same(pair, "POST", "/v1/batches", headers=auth(key),
                               json=create_body(file_id))
    assert status == 429 and body["error"]["code"]
