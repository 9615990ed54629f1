"""`batchyard serve` refuses unsafe or broken start-ups before binding anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from batchyard.api.app import check_bind_safety, is_loopback
from batchyard.cli import app as cli_app
from batchyard.config import ApiSettings, Settings
from batchyard.errors import ConfigError

CLEAN_ENV = {"BATCHYARD_MASTER_KEY": None, "BATCHYARD_CONFIG_FILE": None}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_public_bind_needs_a_master_key() -> None:
    with pytest.raises(ConfigError, match="BATCHYARD_MASTER_KEY"):
        check_bind_safety(Settings(master_key=None, api=ApiSettings(host="0.0.0.0")))
    check_bind_safety(Settings(master_key=SecretStr("k"), api=ApiSettings(host="0.0.0.0")))
    check_bind_safety(Settings(master_key=None, api=ApiSettings(host="127.0.0.1")))


def test_serve_refuses_a_public_bind_without_a_key() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"], env=CLEAN_ENV)
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output


def test_serve_stops_on_a_bad_config_naming_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model_list:\n  - model_name: ok\n    litellm_params: {model: openai/x}\n"
                      "  - model_name: broken\n    litellm_params: {model: openai/y, "
                      "api_key: os.environ/BY_SURELY_UNSET_NAME}\n")
    result = CliRunner().invoke(cli_app, ["serve", "--config", str(config)], env=CLEAN_ENV)
    assert result.exit_code == 2
    assert "model_list[1] (model_name='broken')" in result.output
    assert "BY_SURELY_UNSET_NAME" in result.output
