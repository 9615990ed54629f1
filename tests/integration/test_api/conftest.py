"""Fixtures for the API tests: real PostgreSQL/Redis, the app in-process or on a real port."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.testclient import TestClient

from batchyard.api.app import create_app
from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.config import PipelineSettings, Settings
from batchyard.db.migrate import upgrade
from batchyard.services.container import Services, build_services
from tests.e2e.helpers import Nudges

MASTER = "sk-master-test-7f3a9c"


def jsonl(count: int = 3, model: str = "gpt-4o-mini", start: int = 0) -> bytes:
    """A valid batch input of ``count`` chat requests."""
    lines = [json.dumps({"custom_id": f"task-{i}", "method": "POST",
                         "url": "/v1/chat/completions",
                         "body": {"model": model,
                                  "messages": [{"role": "user", "content": f"hi {i}"}]}})
             for i in range(start, start + count)]
    return ("\n".join(lines) + "\n").encode()


def auth(key: str) -> dict[str, str]:
    """Bearer header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def api_database(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated to head."""
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture()
def isolated_database(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database for one worker test.

    Worker tests leave batches in flight on purpose; a worker's sweep scans the whole
    database, so each of them gets its own rather than meeting another test's leftovers.
    """
    import sqlalchemy as sa

    admin_url, _, base = postgres_url.rpartition("/")
    name = f"{base}_w{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{admin_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(f"{admin_url}/{name}")
        yield f"{admin_url}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture()
def make_settings(api_database: str, redis_url: str, unique_name: str,
                  tmp_path: Path) -> Callable[..., Settings]:
    """Settings for one test: its own queue names, near-zero pipeline delays, a master key."""
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": api_database, "broker_url": redis_url, "data_dir": tmp_path,
            "master_key": SecretStr(MASTER), "config_file": None,
            "openai_api_key": None, "openai_api_base": None, "azure_api_key": None,
            "azure_api_base": None, "azure_api_version": None,
            "pipeline": PipelineSettings(queue=unique_name, poll_min_seconds=0.05,
                                         poll_max_seconds=0.2, tick_seconds=0.2,
                                         stale_seconds=5.0, quota_retry_seconds=1.0),
        }
        values.update(overrides)
        return Settings(**values)
    return build


@dataclass
class Api:
    """The app under test, its services and a client."""

    client: TestClient
    services: Services
    nudges: Nudges

    def upload(self, key: str = MASTER, content: bytes | None = None,
               filename: str = "mydata.jsonl", purpose: str = "batch",
               prefix: str = "/v1") -> httpx.Response:
        """POST a multipart upload."""
        return self.client.post(f"{prefix}/files", headers=auth(key), data={"purpose": purpose},
                                files={"file": (filename, content or jsonl())})

    def file_id(self, key: str = MASTER, content: bytes | None = None) -> str:
        """Upload and return the new file's id."""
        response = self.upload(key, content)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def create_batch(self, key: str = MASTER, file_id: str | None = None,
                     prefix: str = "/v1", **extra: Any) -> httpx.Response:
        """POST /batches over ``file_id`` (a fresh upload when None)."""
        body = {"input_file_id": file_id or self.file_id(key),
                "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra}
        return self.client.post(f"{prefix}/batches", headers=auth(key), json=body)

    def new_key(self, name: str = "k", **limits: Any) -> tuple[str, str]:
        """Create a virtual key through the admin route; returns (id, plain text)."""
        response = self.client.post("/admin/keys", headers=auth(MASTER),
                                    json={"name": name, **limits})
        assert response.status_code == 200, response.text
        return response.json()["id"], response.json()["key"]


def local_client(app: FastAPI, host: str = "127.0.0.1") -> TestClient:
    """A TestClient whose peer address is ``host``."""
    return TestClient(app, client=(host, 50000), raise_server_exceptions=False)


@pytest.fixture()
def api(make_settings: Callable[..., Settings]) -> Iterator[Api]:
    """The app in-process (TestClient) with recorded nudges and no workers."""
    settings = make_settings()
    nudges = Nudges()
    services = build_services(settings, nudge=nudges)
    try:
        with local_client(create_app(settings, services)) as client:
            yield Api(client, services, nudges)
    finally:
        services.close()


class ApiServer:
    """``create_app`` served by real uvicorn on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def wait_for(check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        time.sleep(interval)


def worker_env(settings: Settings) -> dict[str, str]:
    """The pipeline's own ``settings_env`` plus what the API tests add (Azure, config.yaml)."""
    env = settings_env(settings)
    extra = {"BATCHYARD_AZURE_API_KEY": settings.azure_api_key,
             "BATCHYARD_AZURE_API_BASE": settings.azure_api_base,
             "BATCHYARD_AZURE_API_VERSION": settings.azure_api_version,
             "BATCHYARD_CONFIG_FILE": settings.config_file}
    for name, value in extra.items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[name] = str(value)
    return env


class WorkerProcess:
    """A real worker (with beat), started the pipeline's way (``start_worker_process``)."""

    def __init__(self, settings: Settings, *, concurrency: int = 4) -> None:
        self._log = settings.data_dir / "worker.log"
        self.process = start_worker_process(worker_env(settings), concurrency=concurrency,
                                            beat=True, loglevel="WARNING", log=self._log)

    def log(self) -> str:
        """What the worker printed (for failure messages)."""
        return self._log.read_text(errors="replace")[-4000:] if self._log.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
