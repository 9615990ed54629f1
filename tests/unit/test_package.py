"""The package installs with its entry points and its error tree behaves."""

from __future__ import annotations

import subprocess
import sys

from batchyard.config import Settings
from batchyard.errors import JsonlError, NotFoundError, ProviderTransientError


def test_python_m_batchyard_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "batchyard", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "emulator" in out


def test_error_default_message_is_its_docstring() -> None:
    assert NotFoundError().message == "No such object."
    assert NotFoundError().http_status == 404


def test_jsonl_error_names_the_line() -> None:
    err = JsonlError("not valid JSON", line=7, code="invalid_json_line")
    assert err.line == 7
    assert "line 7" in str(err)


def test_provider_error_keeps_code_and_request_id() -> None:
    err = ProviderTransientError("slow down", status=429, code="rate_limit_exceeded",
                                 request_id="req_1", retry_after=2.0)
    assert err.retry_after == 2.0
    assert "req_1" in str(err) and "429" in str(err)


def test_settings_read_litellm_style_env_names(monkeypatch) -> None:
    monkeypatch.setenv("AZURE_API_KEY", "k-azure")
    monkeypatch.setenv("BATCHYARD_PIPELINE__PART_MAX_REQUESTS", "7")
    settings = Settings()
    assert settings.azure_api_key is not None
    assert settings.azure_api_key.get_secret_value() == "k-azure"
    assert "k-azure" not in repr(settings)
    assert settings.pipeline.part_max_requests == 7


def test_default_urls_are_embedded(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_broker_url.startswith("sqla+sqlite:///")
    assert settings.is_embedded
