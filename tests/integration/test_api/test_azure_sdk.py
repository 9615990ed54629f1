"""The official AzureOpenAI client (and the OpenAI client on Azure's v1 surface) against
batchyard's ``/azure`` wire paths: upload, create, retrieve, list, cancel, content."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
import sqlalchemy as sa

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.services.container import Services, build_services
from tests.e2e.helpers import Nudges
from tests.integration.test_api.conftest import MASTER, ApiServer, jsonl

pytestmark = [pytest.mark.postgres]


@pytest.fixture()
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, Services]]:
    settings = make_settings()
    services = build_services(settings, nudge=Nudges())
    try:
        with ApiServer(create_app(settings, services)) as running:
            yield running.base_url, services
    finally:
        services.close()


def clients(base_url: str) -> list[openai.OpenAI]:
    return [
        openai.AzureOpenAI(azure_endpoint=f"{base_url}/azure", api_version="2024-10-21",
                           api_key=MASTER, max_retries=0),
        openai.OpenAI(base_url=f"{base_url}/azure/openai/v1", api_key=MASTER, max_retries=0),
    ]


@pytest.mark.parametrize("surface", [0, 1], ids=["AzureOpenAI-2024-10-21", "azure-v1"])
def test_the_azure_clients_run_the_whole_flow(server: tuple[str, Services],
                                              surface: int) -> None:
    base_url, services = server
    client = clients(base_url)[surface]
    data = jsonl(2)
    uploaded = client.files.create(file=("azure.jsonl", data), purpose="batch")
    assert (uploaded.bytes, uploaded.purpose, uploaded.filename) == (len(data), "batch",
                                                                      "azure.jsonl")
    assert client.files.content(uploaded.id).content == data

    created = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions",
                                    completion_window="24h")
    assert created.status == "validating" and created.endpoint == "/chat/completions"
    with services.engine.connect() as conn:
        provider = conn.execute(sa.text("SELECT provider FROM batches WHERE id = :id"),
                                {"id": created.id}).scalar()
    assert provider == "azure"  # created on an Azure path: routed to Azure deployments

    assert client.batches.retrieve(created.id).id == created.id
    assert created.id in [b.id for b in client.batches.list(limit=100).data]
    cancelled = client.batches.cancel(created.id)
    assert cancelled.status in ("cancelling", "cancelled")
    client.close()


def test_the_api_key_header_is_how_azure_clients_authenticate(
        server: tuple[str, Services]) -> None:
    base_url, _ = server
    wrong = openai.AzureOpenAI(azure_endpoint=f"{base_url}/azure", api_version="2024-10-21",
                               api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.files.list()
    wrong.close()
