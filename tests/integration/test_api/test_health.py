"""Health: liveness, readiness (database and broker) and the per-deployment check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchyard.api.app import create_app
from batchyard.cli import app as cli_app
from batchyard.config import Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services.container import build_services
from tests.integration.test_api.conftest import MASTER, Api, auth, local_client

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GOOD_KEY = "sk-emulator-good-key-123"


@pytest.fixture(scope="module")
def emulators() -> Iterator[tuple[EmulatorServer, EmulatorServer]]:
    """An OpenAI and an Azure emulator that both demand GOOD_KEY."""
    with EmulatorServer(EmulatorConfig(flavor="openai", api_keys=(GOOD_KEY,))) as openai_srv, \
            EmulatorServer(EmulatorConfig(flavor="azure", api_keys=(GOOD_KEY,))) as azure_srv:
        yield openai_srv, azure_srv


@pytest.fixture()
def config_file(tmp_path: Path, emulators: tuple[EmulatorServer, EmulatorServer],
                monkeypatch: pytest.MonkeyPatch) -> Path:
    openai_srv, azure_srv = emulators
    monkeypatch.setenv("BY_HEALTH_KEY", GOOD_KEY)
    path = tmp_path / "config.yaml"
    path.write_text(f"""
model_list:
  - model_name: batch-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_key: os.environ/BY_HEALTH_KEY,
                      api_base: "{openai_srv.base_url}/v1"}}
    model_info: {{mode: batch, id: openai-ok}}
  - model_name: batch-mini
    litellm_params: {{model: azure/mini, api_key: os.environ/BY_HEALTH_KEY,
                      api_base: "{azure_srv.base_url}"}}
    model_info: {{mode: batch, id: azure-ok}}
  - model_name: batch-mini
    litellm_params: {{model: azure/mini, api_key: sk-wrong-secret-value,
                      api_base: "{azure_srv.base_url}"}}
    model_info: {{mode: batch, id: azure-badkey}}
  - model_name: batch-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_key: os.environ/BY_HEALTH_KEY,
                      api_base: "http://127.0.0.1:9/v1"}}
    model_info: {{mode: batch, id: openai-down}}
  - model_name: chat
    litellm_params: {{model: openai/gpt-4o, api_key: os.environ/BY_HEALTH_KEY,
                      api_base: "http://127.0.0.1:9/v1"}}
    model_info: {{mode: chat, id: not-a-batch-model}}
""")
    return path


def test_liveness_needs_no_key(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/health/liveness", "/health/liveliness"])
def test_litellm_liveness_paths_answer_too(api: Api, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_reports_database_and_broker(api: Api) -> None:
    response = api.client.get("/health/readiness")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_readiness_is_503_when_the_broker_is_down(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(broker_url="redis://127.0.0.1:9/0")
    services = build_services(settings, nudge=lambda *_: None)
    try:
        with local_client(create_app(settings, services)) as client:
            response = client.get("/health/readiness")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready" and body["database"] == "ok"
        assert body["broker"] != "ok"
    finally:
        services.close()


def test_deployments_are_checked_one_by_one_without_secrets(
        make_settings: Callable[..., Settings], config_file: Path) -> None:
    settings = make_settings(config_file=config_file)
    services = build_services(settings, nudge=lambda *_: None)
    try:
        with local_client(create_app(settings, services)) as client:
            response = client.get("/health/deployments", headers=auth(MASTER))
    finally:
        services.close()
    assert response.status_code == 200
    report = {d["id"]: d for d in response.json()["data"]}
    assert set(report) == {"openai-ok", "azure-ok", "azure-badkey", "openai-down"}
    assert report["openai-ok"] == {"id": "openai-ok", "model_name": "batch-mini",
                                   "provider": "openai", "healthy": True, "error": None}
    assert report["azure-ok"]["healthy"] is True
    assert report["azure-badkey"]["healthy"] is False
    assert "401" in report["azure-badkey"]["error"]
    assert report["openai-down"]["healthy"] is False and report["openai-down"]["error"]
    assert response.json()["unhealthy_count"] == 2
    assert GOOD_KEY not in response.text and "sk-wrong-secret-value" not in response.text


def test_the_health_command_prints_the_same_table(config_file: Path) -> None:
    result = CliRunner().invoke(cli_app, ["health", "--config", str(config_file)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1  # two deployments are down
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines()
             if line.count("│") >= 5}
    assert "yes" in lines["openai-ok"] and "yes" in lines["azure-ok"]
    assert "NO" in lines["azure-badkey"] and "NO" in lines["openai-down"]
    assert GOOD_KEY not in result.output


def test_a_bad_config_stops_the_health_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: g\n    litellm_params: {model: vertex/x}\n")
    result = CliRunner().invoke(cli_app, ["health", "--config", str(bad)])
    assert result.exit_code == 2
    assert "model_list[0]" in result.output and "unknown provider" in result.output
