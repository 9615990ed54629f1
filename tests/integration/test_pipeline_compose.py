"""compose.yaml stays in step with the CLI: every service's command parses as a real
``batchyard`` command line, and the distributed pieces are all there with healthchecks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from batchyard.cli import app

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


class UnknownCommand(Exception):
    """The compose command names no CLI command."""


def _resolve(args: list[str]) -> Any:
    """Parse ``batchyard <args>`` down to the leaf command (raises on unknown names/options).

    Typer ships its own copy of click, so the click objects are reached by duck typing.
    """
    command: Any = typer.main.get_command(app)
    parent = command.context_class(command, info_name="batchyard")
    while hasattr(command, "list_commands"):
        sub = command.get_command(parent, args[0]) if args else None
        if sub is None:
            raise UnknownCommand(f"no such command: {args[:1]}")
        command = sub
        parent = command.context_class(command, info_name=args[0], parent=parent)
        args = args[1:]
    # Parsing validates every option and argument without running the command.
    return command.make_context(str(parent.info_name), list(args), parent=parent.parent)


def test_compose_has_the_distributed_services_with_healthchecks() -> None:
    services = _services()
    assert {"postgres", "redis", "migrate", "api", "worker", "beat", "emulator"} <= set(services)
    for name in ("postgres", "redis", "api", "worker", "emulator"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["command"] == ["db", "upgrade"]


@pytest.mark.parametrize("service", ["migrate", "api", "worker", "beat", "emulator"])
def test_every_service_command_exists_in_the_cli(service: str) -> None:
    command = _services()[service]["command"]
    ctx = _resolve(command)
    leaf = command[1] if command[0] == "db" else command[0]
    assert ctx.info_name == leaf


def test_an_unknown_command_is_caught_by_the_check() -> None:
    with pytest.raises(UnknownCommand):
        _resolve(["no-such-command"])


def test_an_unknown_option_is_caught_by_the_check() -> None:
    with pytest.raises(Exception, match="no-such-option"):
        _resolve(["worker", "--no-such-option"])
