"""``GET /v1/batches/{id}/parts``: batchyard's extension showing where each part went."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.services.container import build_services
from batchyard.services.pipeline import run_task
from tests.e2e.helpers import Nudges
from tests.integration.test_api.conftest import MASTER, Api, auth, jsonl, local_client

pytestmark = [pytest.mark.postgres]


@pytest.fixture()
def api_with_deployment(make_settings: Callable[..., Settings]) -> Iterator[Api]:
    # An OpenAI deployment on a port nobody listens on: prepare needs one to route parts to,
    # and nothing here submits.
    settings = make_settings(openai_api_key=SecretStr("sk-test"),
                             openai_api_base="http://127.0.0.1:9/v1")
    nudges = Nudges()
    services = build_services(settings, nudge=nudges)
    try:
        with local_client(create_app(settings, services)) as client:
            yield Api(client, services, nudges)
    finally:
        services.close()


def test_the_parts_of_a_prepared_batch_are_listed(api_with_deployment: Api) -> None:
    api = api_with_deployment
    batch_id = api.create_batch(file_id=api.file_id(content=jsonl(3))).json()["id"]
    run_task(api.services, "prepare", batch_id)
    response = api.client.get(f"/v1/batches/{batch_id}/parts", headers=auth(MASTER))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "list" and page["has_more"] is False
    assert [p["request_count"] for p in page["data"]] == [3]
    part = page["data"][0]
    assert part["object"] == "batch.part" and part["seq"] >= 0 and part["id"] == page["first_id"]
    # not submitted yet: no deployment chosen, no provider batch
    assert part["status"] and part["deployment"] is None and part["provider_batch_id"] is None
    assert {"attempt", "provider_status", "provider_done", "error"} <= set(part)
    assert part["completed"] == 0 and part["failed"] == 0


def test_parts_of_an_unknown_or_foreign_batch_are_404(api: Api) -> None:
    batch_id = api.create_batch().json()["id"]
    _, stranger = api.new_key("stranger")
    for key, target in ((MASTER, "batch_missing"), (stranger, batch_id)):
        response = api.client.get(f"/azure/openai/batches/{target}/parts", headers=auth(key))
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "invalid_request_error"
    empty = api.client.get(f"/v1/batches/{batch_id}/parts", headers=auth(MASTER)).json()
    assert empty["data"] == [] and empty["first_id"] is None
