"""The pipeline tells a batch's story at INFO on ``batchyard.pipeline``, and never a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches as batch_service
from tests.e2e.helpers import InlineDriver, fast_settings, jsonl, request_line, upload

SECRET = "sk-do-not-log-4f9c2e"


def test_lifecycle_lines_name_each_step_and_no_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The emulator takes only this key, so the run really used (and held) it.
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0,
                         api_keys=(SECRET,))
    with EmulatorServer(cfg) as emulator:
        settings = fast_settings(tmp_path, emulator_url=emulator.base_url).model_copy(
            update={"openai_api_key": SecretStr(SECRET)})
        migrate.upgrade(settings.effective_database_url)
        driver = InlineDriver(settings)
        caplog.set_level(logging.INFO, logger="batchyard")
        lines = [request_line(f"r{i}") for i in range(5)]
        batch = batch_service.create_batch(driver.svc, owner=None,
                                           input_file_id=upload(driver.svc, jsonl(lines)),
                                           endpoint="/v1/chat/completions")
        driver.run_until(lambda: batch_service.get_batch(driver.svc, batch.id,
                                                         owner=None).status == "completed")
        driver.svc.close()
    story = [r.getMessage() for r in caplog.records if r.name == "batchyard.pipeline"]
    assert all(r.levelno >= logging.INFO for r in caplog.records
               if r.name == "batchyard.pipeline")
    expected = [f"batch {batch.id} created", f"batch {batch.id} validated: split into 2 parts",
                "part 1 (4 requests) submitted to deployment", "provider status",
                "part 2 (1 requests) submitted to deployment", "part 1 ingested",
                f"batch {batch.id} completed: 5 completed, 0 failed of 5 requests"]
    for fragment in expected:
        assert any(fragment in line for line in story), (fragment, story)
    everything = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert SECRET not in everything


def test_a_provider_error_is_a_warning_with_the_providers_own_message(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0,
                         fail_validation_next=1)
    with EmulatorServer(cfg) as emulator:
        settings = fast_settings(tmp_path, emulator_url=emulator.base_url)
        migrate.upgrade(settings.effective_database_url)
        driver = InlineDriver(settings)
        caplog.set_level(logging.INFO, logger="batchyard")
        batch = batch_service.create_batch(
            driver.svc, owner=None, input_file_id=upload(driver.svc, jsonl([request_line("a")])),
            endpoint="/v1/chat/completions")
        final = driver.run_until(lambda: (b := batch_service.get_batch(
            driver.svc, batch.id, owner=None)).status == "failed" and b)
        driver.svc.close()
    assert final.errors is not None
    provider_message = final.errors.data[0].message
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "batchyard.pipeline" and r.levelno == logging.WARNING]
    assert any(provider_message in line and "invalid_request" in line for line in warnings), \
        warnings
