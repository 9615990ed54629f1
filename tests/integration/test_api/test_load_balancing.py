"""Load balancing over three emulated Azure deployments of one model group, per part.

The pipeline calls ``choose_deployment`` for every part; these tests watch where the parts
land (each emulator counts the provider batches it was given) and what a
``token_limit_exceeded`` does to later choices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from batchyard.api.app import create_app
from batchyard.config import PipelineSettings, Settings
from batchyard.db.engine import make_engine
from batchyard.db.models import DeploymentStateRow, PartRow
from batchyard.domain.jsonl import iter_request_lines
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.integration.test_api.conftest import (
    MASTER,
    ApiServer,
    WorkerProcess,
    jsonl,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HEADERS = {"Authorization": f"Bearer {MASTER}"}
GROUP = "lb-mini"
NAMES = ("a", "b", "c")


def line_tokens(data: bytes) -> int:
    """The pipeline's token estimate of one line (every test line has the same size)."""
    return next(iter_request_lines([data])).est_tokens


@dataclass
class Balanced:
    http: httpx.Client
    emulators: dict[str, EmulatorServer]
    worker: WorkerProcess
    settings: Settings

    def counts(self) -> dict[str, int]:
        return {name: emu.emulator.stats()["batches_created"]
                for name, emu in self.emulators.items()}

    def submit(self, lines: int, start: int = 0) -> str:
        data = jsonl(lines, model=GROUP, start=start)
        upload = self.http.post("/v1/files", headers=HEADERS, data={"purpose": "batch"},
                                files={"file": ("lb.jsonl", data)})
        assert upload.status_code == 200, upload.text
        body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
                "completion_window": "24h", "model": GROUP}
        created = self.http.post("/v1/batches", headers=HEADERS, json=body)
        assert created.status_code == 200, created.text
        return str(created.json()["id"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/batches/{batch_id}", headers=HEADERS).json())

    def wait(self, check: Callable[[], Any], timeout: float = 90.0) -> Any:
        try:
            return wait_for(check, timeout=timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.worker.log()}") from None


@pytest.fixture()
def balanced(make_settings: Callable[..., Settings], tmp_path: Path, isolated_database: str,
             unique_name: str, request: pytest.FixtureRequest) -> Iterator[Balanced]:
    """Three Azure emulators behind one model group; parameters via ``indirect``."""
    params: dict[str, Any] = request.param
    with ExitStack() as stack:
        emulators = {name: stack.enter_context(EmulatorServer(EmulatorConfig(
            flavor="azure", **params["emulator"].get(name, params["emulator"]["*"]))))
            for name in NAMES}
        entries = "".join(f"""
  - model_name: {GROUP}
    litellm_params: {{model: azure/dep-{name}, api_key: k-{name},
                      api_base: "{emulators[name].base_url}"}}
    model_info: {{mode: batch, id: {name}{_quota(params, name)}}}""" for name in NAMES)
        config = tmp_path / "config.yaml"
        config.write_text(f"model_list:{entries}\nbatchyard_settings: "
                          f"{{batch_routing_strategy: {params['strategy']}}}\n")
        settings = make_settings(database_url=isolated_database, config_file=config,
                                 pipeline=PipelineSettings(
            queue=unique_name, part_max_requests=1, poll_min_seconds=0.1,
            poll_max_seconds=0.3, tick_seconds=0.2, stale_seconds=5.0,
            quota_retry_seconds=params.get("quota_retry", 3.0)))
        worker = stack.enter_context(WorkerProcess(settings))
        server = stack.enter_context(ApiServer(create_app(settings)))
        http = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
        yield Balanced(http, emulators, worker, settings)


def _quota(params: dict[str, Any], name: str) -> str:
    quota = params.get("quotas", {}).get(name)
    return f", enqueued_token_quota: {quota}" if quota else ""


T = line_tokens(jsonl(1, model=GROUP))
SLOW = {"validation_delay": 120.0}  # provider batches stay enqueued for the whole test
FAST = {"validation_delay": 0.05, "finalize_delay": 0.05, "request_latency": 0.01}


@pytest.mark.parametrize("balanced", [{
    "strategy": "least_loaded", "emulator": {"*": SLOW},
    "quotas": {"a": 4 * T, "b": 2 * T, "c": 1 * T},
}], indirect=True)
def test_least_loaded_fills_deployments_by_free_quota_then_waits(balanced: Balanced) -> None:
    batch_id = balanced.submit(8)
    balanced.wait(lambda: sum(balanced.counts().values()) == 7)
    assert balanced.counts() == {"a": 4, "b": 2, "c": 1}
    # The eighth part finds no room anywhere and waits (it is not sent over quota).
    engine = make_engine(balanced.settings.effective_database_url)
    try:
        with engine.connect() as conn:
            waiting = conn.execute(select(PartRow.status, PartRow.deployment).where(
                PartRow.batch_id == batch_id, PartRow.deployment.is_(None))).all()
    finally:
        engine.dispose()
    assert [status for status, _ in waiting] == ["pending"]
    deadline = time.monotonic() + 1.0  # several scheduler ticks: still nobody has room
    while time.monotonic() < deadline:
        assert balanced.counts() == {"a": 4, "b": 2, "c": 1}
        time.sleep(0.1)


@pytest.mark.parametrize("balanced", [{
    "strategy": "round_robin", "emulator": {"*": SLOW},
}], indirect=True)
def test_round_robin_takes_turns(balanced: Balanced) -> None:
    balanced.submit(6)
    balanced.wait(lambda: sum(balanced.counts().values()) == 6)
    assert balanced.counts() == {"a": 2, "b": 2, "c": 2}


@pytest.mark.parametrize("balanced", [{
    "strategy": "least_loaded", "quota_retry": 4.0,
    # c advertises the most room but its provider refuses everything (quota 0).
    "emulator": {"*": FAST, "c": {**FAST, "enqueued_token_quota": 0}},
    "quotas": {"a": 10 * T, "b": 10 * T, "c": 100 * T},
}], indirect=True)
def test_token_limit_exceeded_blocks_a_deployment_until_it_has_room(
        balanced: Balanced) -> None:
    first = balanced.submit(4)
    engine = make_engine(balanced.settings.effective_database_url)

    def blocked_until() -> float | None:
        with engine.connect() as conn:
            return conn.execute(select(DeploymentStateRow.blocked_until).where(
                DeploymentStateRow.deployment_id == "c")).scalar()

    try:
        until = balanced.wait(blocked_until)
        refused = balanced.counts()["c"]
        assert refused >= 1
        # An observation window inside the block: c is given nothing new.
        while time.time() < until - 0.5:
            assert balanced.counts()["c"] == refused
            time.sleep(0.1)
        done = balanced.wait(lambda: balanced.batch(first)["status"] == "completed"
                             and balanced.batch(first))
        # a and b ran the requests c refused; nothing failed for the user.
        assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
        # Once c has room again (its provider quota lifted, the block passed) it gets parts.
        balanced.emulators["c"].emulator.set_faults(enqueued_token_quota=None)
        balanced.wait(lambda: time.time() > (blocked_until() or 0))
        second = balanced.submit(2, start=100)
        balanced.wait(lambda: balanced.batch(second)["status"] == "completed")
        statuses = [b["status"] for b in balanced.emulators["c"].emulator.stats()["batches"]]
        assert "completed" in statuses and statuses.count("failed") >= refused
    finally:
        engine.dispose()
