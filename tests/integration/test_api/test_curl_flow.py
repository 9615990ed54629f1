"""The curl flows of docs/api.md (the brief's README flows), driven through httpx and curl.

One stack: the API on a real port, a real worker, an OpenAI and an Azure emulator, env
catch-all deployments for both plus a config.yaml model group ``batch-gpt-4o-mini`` on Azure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.integration.test_api.conftest import (
    MASTER,
    ApiServer,
    WorkerProcess,
    jsonl,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HEADERS = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class CurlStack:
    base: str
    http: httpx.Client
    openai_emu: EmulatorServer
    azure_emu: EmulatorServer
    worker: WorkerProcess

    def upload(self, prefix: str, data: bytes) -> dict[str, Any]:
        # curl -F purpose="batch" -F file="@mydata.jsonl"
        response = self.http.post(f"{prefix}/files", headers={"Authorization": HEADERS[
            "Authorization"]}, data={"purpose": "batch"}, files={"file": ("mydata.jsonl", data)})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def create(self, prefix: str, file_id: str, **extra: Any) -> dict[str, Any]:
        # curl -H "Content-Type: application/json" -d '{...}'
        body = json.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                           "completion_window": "24h", **extra})
        response = self.http.post(f"{prefix}/batches", headers=HEADERS, content=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def retrieve(self, prefix: str, batch_id: str) -> dict[str, Any]:
        response = self.http.get(f"{prefix}/batches/{batch_id}", headers=HEADERS)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def finished(self, prefix: str, batch_id: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            batch = self.retrieve(prefix, batch_id)
            return batch if batch["status"] in TERMINAL else None
        try:
            return dict(wait_for(check, timeout=90, interval=0.2))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.worker.log()}") from None

    def emulated_models(self, emulator: EmulatorServer) -> list[str]:
        return [b["model"] for b in emulator.emulator.stats()["batches"]]


@pytest.fixture()
def curl_stack(make_settings: Callable[..., Settings], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch, isolated_database: str) -> Iterator[CurlStack]:
    fast = {"validation_delay": 0.05, "finalize_delay": 0.05, "cancel_grace": 0.1,
            "request_latency": 0.02}
    with EmulatorServer(EmulatorConfig(flavor="openai", **fast)) as openai_emu, \
            EmulatorServer(EmulatorConfig(flavor="azure", **fast)) as azure_emu:
        config = tmp_path / "config.yaml"
        config.write_text("""
model_list:
  - model_name: "batch-gpt-4o-mini"
    litellm_params:
      model: "azure/gpt-4o-mini"
      api_key: os.environ/AZURE_API_KEY
      api_base: os.environ/AZURE_API_BASE
    model_info:
      mode: batch
litellm_settings:
  enable_loadbalancing_on_batch_endpoints: true
""")
        monkeypatch.setenv("AZURE_API_KEY", "azure-emulated")
        monkeypatch.setenv("AZURE_API_BASE", azure_emu.base_url)
        settings = make_settings(
            database_url=isolated_database, config_file=config,
            openai_api_key=SecretStr("sk-emulated"),
            openai_api_base=f"{openai_emu.base_url}/v1",
            azure_api_key=SecretStr("azure-emulated"), azure_api_base=azure_emu.base_url)
        with WorkerProcess(settings) as worker, ApiServer(create_app(settings)) as server, \
                httpx.Client(base_url=server.base_url, timeout=30) as http:
            yield CurlStack(server.base_url, http, openai_emu, azure_emu, worker)


def test_the_openai_curl_flow(curl_stack: CurlStack) -> None:
    s = curl_stack
    data = jsonl(4)
    file_obj = s.upload("/v1", data)
    batch = s.create("/v1", file_obj["id"], metadata={"key1": "value1"})
    assert batch["status"] == "validating" and batch["input_file_id"] == file_obj["id"]
    done = s.finished("/v1", batch["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 4
    assert s.emulated_models(s.openai_emu) == ["gpt-4o-mini"]  # the env catch-all, model kept
    assert s.emulated_models(s.azure_emu) == []

    listed = s.http.get("/v1/batches?limit=2", headers=HEADERS).json()
    assert listed["object"] == "list" and len(listed["data"]) <= 2
    assert listed["first_id"] == listed["data"][0]["id"]

    output = s.http.get(f"/v1/files/{done['output_file_id']}/content", headers=HEADERS)
    assert len(output.text.splitlines()) == 4
    assert s.http.get(f"/v1/files/{file_obj['id']}/content", headers=HEADERS).content == data


def test_the_azure_curl_flow_with_cancel(curl_stack: CurlStack) -> None:
    s = curl_stack
    file_obj = s.upload("/azure/v1", jsonl(3))
    batch = s.create("/azure/v1", file_obj["id"])
    done = s.finished("/azure/v1", batch["id"])
    assert done["status"] == "completed", done
    assert s.emulated_models(s.azure_emu) == ["gpt-4o-mini"]  # routed to Azure
    assert s.emulated_models(s.openai_emu) == []

    slow = s.create("/azure/v1", s.upload("/azure/v1", jsonl(400))["id"])
    cancel = s.http.post(f"/azure/v1/batches/{slow['id']}/cancel", headers=HEADERS)
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelling"
    assert s.finished("/azure/v1", slow["id"])["status"] == "cancelled"
    listed = s.http.get("/v1/batches?limit=2", headers=HEADERS).json()
    assert {b["id"] for b in listed["data"]} == {slow["id"], batch["id"]}
    assert listed["has_more"] is False


def test_the_load_balanced_model_flow(curl_stack: CurlStack) -> None:
    s = curl_stack
    # "Just set model: batch-gpt-4o-mini in your .jsonl" -- and in the create body.
    file_obj = s.upload("/v1", jsonl(3, model="batch-gpt-4o-mini"))
    batch = s.create("/v1", file_obj["id"], model="batch-gpt-4o-mini")
    done = s.finished("/v1", batch["id"])
    assert done["status"] == "completed", done
    # The group's Azure deployment ran it, with the JSONL's model rewritten to its name.
    assert s.emulated_models(s.azure_emu) == ["gpt-4o-mini"]
    assert s.emulated_models(s.openai_emu) == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_commands_verbatim(curl_stack: CurlStack, tmp_path: Path) -> None:
    (tmp_path / "mydata.jsonl").write_bytes(jsonl(2))
    env = {"BATCHYARD_MASTER_KEY": MASTER, "PATH": "/usr/bin:/bin"}
    base = curl_stack.base

    def curl(script: str) -> dict[str, Any]:
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, check=True,
                              capture_output=True, text=True, timeout=60)
        return dict(json.loads(done.stdout))

    uploaded = curl(f"""curl -s {base}/v1/files \\
    -H "Authorization: Bearer $BATCHYARD_MASTER_KEY" \\
    -F purpose="batch" \\
    -F file="@mydata.jsonl" """)
    assert uploaded["filename"] == "mydata.jsonl" and uploaded["bytes"] == len(jsonl(2))
    env["FILE_ID"] = uploaded["id"]
    created = curl(f"""curl -s {base}/v1/batches \\
    -H "Authorization: Bearer $BATCHYARD_MASTER_KEY" \\
    -H "Content-Type: application/json" \\
    -d '{{
        "input_file_id": "'$FILE_ID'",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {{"key1": "value1"}}
    }}'""")
    assert created["status"] == "validating" and created["metadata"] == {"key1": "value1"}
    env["BATCH_ID"] = created["id"]
    retrieved = curl(f"""curl -s {base}/azure/v1/batches/$BATCH_ID \\
    -H "Authorization: Bearer $BATCHYARD_MASTER_KEY" \\
    -H "Content-Type: application/json" """)
    assert retrieved["id"] == created["id"]
    listed = curl(f"""curl -s "{base}/v1/batches?limit=2" \\
    -H "Authorization: Bearer $BATCHYARD_MASTER_KEY" \\
    -H "Content-Type: application/json" """)
    assert listed["object"] == "list"
